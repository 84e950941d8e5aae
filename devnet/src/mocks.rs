//! The devnet cast of the original AITBC design (issue #6): a coordinator that takes jobs and
//! attests receipts, and a miner that does the jobs and claims the receipts (SPEC §4).
//!
//! Both run inside the `aitbc-devnet demo` process; neither is a network service. They exist so
//! that the one path by which AIT is minted can be exercised end to end against real nodes:
//! client pays the coordinator, miner computes, both sign, anyone submits the `ReceiptClaim`,
//! every validator re-checks it with no call out of the chain.
//!
//! The keys are deterministic (SHA-256 of a fixed string), so `up` can register the coordinator
//! and fund both in genesis without the demo having to read a file, and every devnet has the
//! same cast. Those seeds are public: the keys protect nothing and must never hold value on a
//! real chain.
//!
//! The "work" is a deterministic stand-in for AI compute: the output is SHA-256 of the job id
//! and its input ([`job_output`]), so the coordinator can verify a miner's output by recomputing
//! it, which is what a real coordinator's verification (re-execution, spot checks, a trusted
//! runtime) would decide for an actual model run.

use aitbc_chain::crypto::{self, VerifyingKey};
use aitbc_chain::genesis::{Genesis, GenesisAccount};
use aitbc_chain::receipt::{Receipt, ReceiptCore};
use aitbc_chain::{Address, Hash, PublicKey, SecretKey, Signature, Tx, TxKind};
use aitbc_node::client::rpc::{RpcClient, RpcError};
use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The only job ids the coordinator attests (issue #6: "job ids 1..1,000,000"). A bounded id
/// space keeps the mock honest about being a mock and gives the refusal path something to test.
pub const FIRST_JOB_ID: u64 = 1;
/// See [`FIRST_JOB_ID`].
pub const LAST_JOB_ID: u64 = 1_000_000;
/// Genesis balance of the coordinator: it pays each receipt's `price` to the miner out of its
/// balance (SPEC §4), and a claim is refused if that balance does not cover the price. The
/// client's payment normally covers it; the float makes the demo independent of ordering.
pub const COORDINATOR_BALANCE: u64 = 1_000_000 * aitbc_chain::params::AIT;
/// Genesis balance of the miner: enough fees for many claims, so it submits its own.
pub const MINER_BALANCE: u64 = 1_000 * aitbc_chain::params::AIT;
/// Compute units the coordinator quotes per started [`BYTES_PER_QUOTE_STEP`] bytes of input.
pub const UNITS_PER_QUOTE_STEP: u64 = 100;
/// See [`UNITS_PER_QUOTE_STEP`].
pub const BYTES_PER_QUOTE_STEP: u64 = 16;
/// Price per compute unit the coordinator charges the client, in base units (0.001 AIT).
pub const PRICE_PER_UNIT: u64 = 1_000;
/// Key file of the coordinator inside the devnet's accounts folder.
pub const COORDINATOR_KEY_FILE: &str = "coordinator";
/// Key file of the miner inside the devnet's accounts folder.
pub const MINER_KEY_FILE: &str = "miner";

/// The seed of the devnet coordinator: SHA-256 of `"aitbc devnet coordinator"`.
pub fn coordinator_seed() -> [u8; 32] {
    Hash::of(b"aitbc devnet coordinator").0
}

/// The seed of the devnet miner: SHA-256 of `"aitbc devnet miner"`.
pub fn miner_seed() -> [u8; 32] {
    Hash::of(b"aitbc devnet miner").0
}

/// The devnet coordinator's signing key.
pub fn coordinator_key() -> SecretKey {
    SecretKey::from_seed(coordinator_seed())
}

/// The devnet miner's signing key.
pub fn miner_key() -> SecretKey {
    SecretKey::from_seed(miner_seed())
}

/// The devnet coordinator's address.
pub fn coordinator_address() -> Address {
    Address::of(&coordinator_key().public())
}

/// The devnet miner's address.
pub fn miner_address() -> Address {
    Address::of(&miner_key().public())
}

/// Path of the coordinator's key file in the devnet folder `dir`.
pub fn coordinator_key_path(dir: &Path) -> PathBuf {
    dir.join(crate::accounts::ACCOUNTS_DIR)
        .join(COORDINATOR_KEY_FILE)
}

/// Path of the miner's key file in the devnet folder `dir`.
pub fn miner_key_path(dir: &Path) -> PathBuf {
    dir.join(crate::accounts::ACCOUNTS_DIR).join(MINER_KEY_FILE)
}

/// Writes the coordinator's and the miner's key files (0600, never overwriting) into the
/// accounts folder, which must exist. The mocks do not need them (their keys are derived);
/// they are there so the cast can also be driven by hand with `aitbc-node tx … --key`.
pub fn write_key_files(dir: &Path) -> Result<()> {
    aitbc_node::keys::write_seed_file(&coordinator_key_path(dir), &coordinator_seed())
        .context("writing the coordinator key file")?;
    aitbc_node::keys::write_seed_file(&miner_key_path(dir), &miner_seed())
        .context("writing the miner key file")?;
    Ok(())
}

/// Registers the devnet coordinator in `genesis` and funds it and the miner. Called by `up`
/// while it builds a new devnet's genesis; the result is validated as a node loads it.
pub fn add_to_genesis(genesis: &mut Genesis) {
    let coordinator = coordinator_address();
    if !genesis.coordinators.contains(&coordinator) {
        genesis.coordinators.push(coordinator);
    }
    genesis.accounts.push(GenesisAccount {
        address: coordinator,
        balance: COORDINATOR_BALANCE,
    });
    genesis.accounts.push(GenesisAccount {
        address: miner_address(),
        balance: MINER_BALANCE,
    });
}

/// The deterministic stand-in for a job's AI output: SHA-256 over a domain tag, the job id
/// (8 bytes little-endian) and the input. Anyone can recompute it, which is how the mock
/// coordinator "verifies" the miner's work.
pub fn job_output(job_id: u64, input: &[u8]) -> Hash {
    Hash::of_parts(&[b"aitbc devnet job output/1", &job_id.to_le_bytes(), input])
}

/// Compute units the coordinator quotes for `input`: [`UNITS_PER_QUOTE_STEP`] per started
/// [`BYTES_PER_QUOTE_STEP`] bytes, at least one step.
pub fn quote_units(input: &[u8]) -> u64 {
    let steps = (input.len() as u64).div_ceil(BYTES_PER_QUOTE_STEP).max(1);
    steps.saturating_mul(UNITS_PER_QUOTE_STEP)
}

/// A job as the coordinator posted it: who asked, what to compute, and what it costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub job_id: u64,
    pub client: Address,
    pub input: Vec<u8>,
    pub compute_units: u64,
    /// What the client pays the coordinator, and the coordinator pays the miner.
    pub price: u64,
}

/// Why the coordinator refused to post a job or attest a receipt. Each names what it refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MockError {
    JobIdOutOfRange(u64),
    JobExists(u64),
    UnknownJob(u64),
    /// A field of the receipt core is not what the job says.
    Mismatch {
        job_id: u64,
        field: &'static str,
    },
    WrongOutput(u64),
    BadMinerSignature {
        job_id: u64,
        why: String,
    },
    PaymentNotFound(Hash),
    PaymentNotCommitted(Hash),
    PaymentNotTransfer(Hash),
    PaymentWrongParties(Hash),
    PaymentTooSmall {
        tx: Hash,
        paid: u64,
        price: u64,
    },
    /// The node answered with a tx whose hash is not the one asked for.
    PaymentAnswerForged(Hash),
    PaymentUsed {
        tx: Hash,
        receipt_id: Hash,
    },
    /// The payment could not be looked up (node unreachable, bad answer).
    Lookup(String),
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MockError::JobIdOutOfRange(id) => write!(
                f,
                "job id {id} is outside {FIRST_JOB_ID}..={LAST_JOB_ID}: the devnet coordinator \
                 attests no such job"
            ),
            MockError::JobExists(id) => write!(f, "job id {id} is already posted"),
            MockError::UnknownJob(id) => write!(f, "job id {id} was never posted"),
            MockError::Mismatch { job_id, field } => {
                write!(f, "job {job_id}: the receipt's {field} is not the job's")
            }
            MockError::WrongOutput(id) => {
                write!(f, "job {id}: the output hash is not the job's output")
            }
            MockError::BadMinerSignature { job_id, why } => {
                write!(f, "job {job_id}: miner signature: {why}")
            }
            MockError::PaymentNotFound(tx) => write!(f, "client payment {tx} is not on chain"),
            MockError::PaymentNotCommitted(tx) => {
                write!(f, "client payment {tx} is not committed yet")
            }
            MockError::PaymentNotTransfer(tx) => write!(f, "client payment {tx} is no transfer"),
            MockError::PaymentWrongParties(tx) => write!(
                f,
                "client payment {tx} is not a transfer from the job's client to this coordinator"
            ),
            MockError::PaymentTooSmall { tx, paid, price } => write!(
                f,
                "client payment {tx} pays {paid} units, less than the price {price}"
            ),
            MockError::PaymentAnswerForged(tx) => write!(
                f,
                "the node answered getTx {tx} with a different transaction"
            ),
            MockError::PaymentUsed { tx, receipt_id } => {
                write!(f, "client payment {tx} already backs receipt {receipt_id}")
            }
            MockError::Lookup(why) => write!(f, "looking up the client payment: {why}"),
        }
    }
}

impl std::error::Error for MockError {}

/// A tx as the chain reports it: what the coordinator needs to judge a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookedUpTx {
    pub tx: Tx,
    pub committed: bool,
    pub height: Option<u64>,
}

/// Where the coordinator looks up a payment: the node's `getTx` in the demo, a map in tests.
pub trait TxLookup {
    /// The tx with this hash, `None` if the node does not know it.
    fn lookup_tx(&self, hash: &Hash) -> Result<Option<LookedUpTx>, String>;
}

/// The fields of a `getTx` answer the coordinator reads.
#[derive(Deserialize)]
struct GetTxAnswer {
    tx: Tx,
    status: String,
    height: Option<u64>,
}

impl TxLookup for RpcClient {
    fn lookup_tx(&self, hash: &Hash) -> Result<Option<LookedUpTx>, String> {
        match self.call("getTx", json!({ "hash": hash })) {
            Ok(answer) => {
                let a: GetTxAnswer = serde_json::from_value(answer)
                    .map_err(|e| format!("getTx at {}: unexpected answer: {e}", self.url()))?;
                Ok(Some(LookedUpTx {
                    tx: a.tx,
                    committed: a.status == "committed",
                    height: a.height,
                }))
            }
            Err(RpcError::Rpc {
                reason: Some(r), ..
            }) if r == "not_found" => Ok(None),
            Err(e) => Err(format!("getTx at {}: {e}", self.url())),
        }
    }
}

/// The mock coordinator: posts jobs, and attests a receipt only for a job it posted, whose
/// output it verified and whose committed client payment it saw.
pub struct Coordinator {
    chain_id: String,
    key: SecretKey,
    address: Address,
    jobs: HashMap<u64, Job>,
    /// Payment tx → the receipt it backs: one payment pays for one receipt. The chain refuses
    /// a second use too (`payment_used`); refusing here keeps the coordinator from signing a
    /// receipt that can never be claimed.
    attested: HashMap<Hash, Hash>,
}

impl Coordinator {
    /// The devnet coordinator (the key `up` registers in genesis) for chain `chain_id`.
    pub fn devnet(chain_id: &str) -> Coordinator {
        Coordinator::new(chain_id, coordinator_key())
    }

    pub fn new(chain_id: &str, key: SecretKey) -> Coordinator {
        let address = Address::of(&key.public());
        Coordinator {
            chain_id: chain_id.to_string(),
            key,
            address,
            jobs: HashMap::new(),
            attested: HashMap::new(),
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// Refuses job ids outside [`FIRST_JOB_ID`]`..=`[`LAST_JOB_ID`].
    pub fn check_job_id(job_id: u64) -> Result<(), MockError> {
        if (FIRST_JOB_ID..=LAST_JOB_ID).contains(&job_id) {
            Ok(())
        } else {
            Err(MockError::JobIdOutOfRange(job_id))
        }
    }

    /// Posts a job for `client` and quotes it: compute units from the input's size, price at
    /// [`PRICE_PER_UNIT`]. The client then pays `price` to [`Coordinator::address`].
    pub fn post_job(
        &mut self,
        job_id: u64,
        client: Address,
        input: Vec<u8>,
    ) -> Result<Job, MockError> {
        Coordinator::check_job_id(job_id)?;
        if self.jobs.contains_key(&job_id) {
            return Err(MockError::JobExists(job_id));
        }
        let compute_units = quote_units(&input);
        let job = Job {
            job_id,
            client,
            input,
            compute_units,
            price: compute_units.saturating_mul(PRICE_PER_UNIT),
        };
        self.jobs.insert(job_id, job.clone());
        Ok(job)
    }

    /// Checks a miner-signed receipt core and, if every check passes, adds the coordinator's
    /// signature. The checks, in order: the job id is in range and was posted here; the core
    /// names this coordinator and the job's client, units and price; the output is the job's
    /// output; the miner's key is the miner address's and its signature verifies; the payment
    /// has not backed another receipt; and `ledger` reports it as a committed `Transfer` from
    /// the client to this coordinator of at least the price. The chain re-checks the payment
    /// when the claim executes, but a coordinator signing for unpaid jobs would be attesting
    /// something false.
    pub fn attest(
        &mut self,
        core: ReceiptCore,
        miner_pubkey: PublicKey,
        miner_sig: Signature,
        ledger: &dyn TxLookup,
    ) -> Result<Receipt, MockError> {
        let job_id = core.job_id;
        Coordinator::check_job_id(job_id)?;
        let job = self
            .jobs
            .get(&job_id)
            .ok_or(MockError::UnknownJob(job_id))?;
        let mismatch = |field| MockError::Mismatch { job_id, field };
        if core.coordinator != self.address {
            return Err(mismatch("coordinator"));
        }
        if core.client != job.client {
            return Err(mismatch("client"));
        }
        if core.compute_units != job.compute_units {
            return Err(mismatch("compute_units"));
        }
        if core.price != job.price {
            return Err(mismatch("price"));
        }
        if core.output_hash != job_output(job_id, &job.input) {
            return Err(MockError::WrongOutput(job_id));
        }
        if Address::of(&miner_pubkey) != core.miner {
            return Err(MockError::BadMinerSignature {
                job_id,
                why: "the public key is not the key of the receipt's miner".into(),
            });
        }
        let digest = core.digest(&self.chain_id);
        VerifyingKey::new(&miner_pubkey)
            .and_then(|k| crypto::verify(&k, &digest, &miner_sig))
            .map_err(|e| MockError::BadMinerSignature {
                job_id,
                why: e.to_string(),
            })?;
        let pay = core.client_payment_tx;
        if let Some(receipt_id) = self.attested.get(&pay) {
            if *receipt_id != core.receipt_id {
                return Err(MockError::PaymentUsed {
                    tx: pay,
                    receipt_id: *receipt_id,
                });
            }
        }
        let found = ledger
            .lookup_tx(&pay)
            .map_err(MockError::Lookup)?
            .ok_or(MockError::PaymentNotFound(pay))?;
        if found.tx.hash() != pay {
            return Err(MockError::PaymentAnswerForged(pay));
        }
        if !found.committed {
            return Err(MockError::PaymentNotCommitted(pay));
        }
        let TxKind::Transfer { to, amount } = found.tx.kind else {
            return Err(MockError::PaymentNotTransfer(pay));
        };
        if found.tx.sender() != job.client || to != self.address {
            return Err(MockError::PaymentWrongParties(pay));
        }
        if amount < job.price {
            return Err(MockError::PaymentTooSmall {
                tx: pay,
                paid: amount,
                price: job.price,
            });
        }
        self.attested.insert(pay, core.receipt_id);
        Ok(Receipt {
            core,
            miner_pubkey,
            miner_sig,
            coordinator_pubkey: self.key.public(),
            coordinator_sig: self.key.sign_digest(&digest),
        })
    }
}

/// The mock miner: does a job and signs the receipt core for it.
pub struct Miner {
    chain_id: String,
    key: SecretKey,
    address: Address,
}

impl Miner {
    /// The devnet miner (funded in genesis by `up`) for chain `chain_id`.
    pub fn devnet(chain_id: &str) -> Miner {
        Miner::new(chain_id, miner_key())
    }

    pub fn new(chain_id: &str, key: SecretKey) -> Miner {
        let address = Address::of(&key.public());
        Miner {
            chain_id: chain_id.to_string(),
            key,
            address,
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// The receipt id of this miner's receipt for a job paid by `payment_tx`: a hash of the
    /// job, the payment and the miner, so it is new for every paid job (the chain refuses a
    /// reused id) and the same if the miner is asked twice for the same paid job.
    pub fn receipt_id(&self, job_id: u64, payment_tx: &Hash) -> Hash {
        Hash::of_parts(&[
            b"aitbc devnet receipt/1",
            &job_id.to_le_bytes(),
            &payment_tx.0,
            &self.address.0,
        ])
    }

    /// Does `job` (computes [`job_output`]) and returns the receipt core with the miner's
    /// signature over it, ready for the coordinator's attestation.
    pub fn work(
        &self,
        job: &Job,
        coordinator: Address,
        payment_tx: Hash,
    ) -> (ReceiptCore, PublicKey, Signature) {
        let core = ReceiptCore {
            receipt_id: self.receipt_id(job.job_id, &payment_tx),
            job_id: job.job_id,
            client: job.client,
            miner: self.address,
            coordinator,
            compute_units: job.compute_units,
            price: job.price,
            output_hash: job_output(job.job_id, &job.input),
            client_payment_tx: payment_tx,
        };
        let sig = self.key.sign_digest(&core.digest(&self.chain_id));
        (core, self.key.public(), sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const CHAIN: &str = "aitbc-devnet";

    /// A ledger holding the given txs, each committed or not; counts lookups.
    struct FakeLedger {
        txs: HashMap<Hash, LookedUpTx>,
        lookups: Cell<u32>,
    }

    impl FakeLedger {
        fn new(entries: Vec<(Tx, bool)>) -> FakeLedger {
            FakeLedger {
                txs: entries
                    .into_iter()
                    .map(|(tx, committed)| {
                        let h = tx.hash();
                        let height = committed.then_some(7);
                        (
                            h,
                            LookedUpTx {
                                tx,
                                committed,
                                height,
                            },
                        )
                    })
                    .collect(),
                lookups: Cell::new(0),
            }
        }
    }

    impl TxLookup for FakeLedger {
        fn lookup_tx(&self, hash: &Hash) -> Result<Option<LookedUpTx>, String> {
            self.lookups.set(self.lookups.get() + 1);
            Ok(self.txs.get(hash).cloned())
        }
    }

    fn client_key() -> SecretKey {
        crate::accounts::account_key(3)
    }

    fn pay(to: Address, amount: u64, nonce: u64) -> Tx {
        Tx::signed(
            CHAIN,
            TxKind::Transfer { to, amount },
            &client_key(),
            nonce,
            5_000,
        )
    }

    /// A posted job, its committed payment, and the cast.
    fn setup() -> (Coordinator, Miner, Job, Tx) {
        let mut coord = Coordinator::devnet(CHAIN);
        let client = Address::of(&client_key().public());
        let job = coord
            .post_job(42, client, b"classify this image".to_vec())
            .expect("post");
        let payment = pay(coord.address(), job.price, 1);
        (coord, Miner::devnet(CHAIN), job, payment)
    }

    #[test]
    fn keys_are_deterministic_and_pinned() {
        assert_eq!(coordinator_seed(), Hash::of(b"aitbc devnet coordinator").0);
        assert_eq!(miner_seed(), Hash::of(b"aitbc devnet miner").0);
        assert_ne!(coordinator_address(), miner_address());
        assert_eq!(Coordinator::devnet(CHAIN).address(), coordinator_address());
        assert_eq!(Miner::devnet(CHAIN).address(), miner_address());
        // Distinct from every devnet account, so genesis never lists an address twice.
        assert!((0..1000).all(|i| {
            let a = crate::accounts::account_address(i);
            a != coordinator_address() && a != miner_address()
        }));
    }

    #[test]
    fn attested_receipt_verifies_with_the_receipts_own_check() {
        let (mut coord, miner, job, payment) = setup();
        let ledger = FakeLedger::new(vec![(payment.clone(), true)]);
        let (core, pk, sig) = miner.work(&job, coord.address(), payment.hash());
        assert_eq!(core.output_hash, job_output(42, b"classify this image"));
        let receipt = coord.attest(core, pk, sig, &ledger).expect("attest");
        assert_eq!(receipt.verify_signatures(CHAIN), Ok(()));
        assert!(receipt.verify_signatures("another-chain").is_err());
        assert_eq!(receipt.core.coordinator, coordinator_address());
        assert_eq!(receipt.core.miner, miner_address());
        assert_eq!(receipt.core.price, job.price);
        assert_eq!(job.compute_units, 200, "19 bytes = 2 quote steps");
        assert_eq!(job.price, 200 * PRICE_PER_UNIT);
        // Asking again for the same paid job gives the same receipt; the payment is not
        // re-used for a different one.
        let (core, pk, sig) = miner.work(&job, coord.address(), payment.hash());
        let again = coord.attest(core.clone(), pk, sig, &ledger).expect("again");
        assert_eq!(again, receipt);
        let other = Miner::new(CHAIN, SecretKey::from_seed([9; 32]));
        let (core, pk, sig) = other.work(&job, coord.address(), payment.hash());
        let err = coord.attest(core, pk, sig, &ledger).expect_err("reused");
        assert!(matches!(err, MockError::PaymentUsed { .. }), "{err}");
    }

    #[test]
    fn coordinator_refuses_job_ids_outside_its_range_naming_them() {
        for id in [0, LAST_JOB_ID + 1, u64::MAX] {
            let err = Coordinator::check_job_id(id).expect_err("out of range");
            assert_eq!(err, MockError::JobIdOutOfRange(id));
            assert!(err.to_string().contains(&format!("job id {id} ")), "{err}");
            let mut coord = Coordinator::devnet(CHAIN);
            let err = coord
                .post_job(id, miner_address(), vec![1])
                .expect_err("post out of range");
            assert_eq!(err, MockError::JobIdOutOfRange(id));
        }
        for id in [FIRST_JOB_ID, LAST_JOB_ID] {
            assert_eq!(Coordinator::check_job_id(id), Ok(()));
        }
        // Attesting a receipt for an out-of-range job is refused before anything is looked up,
        // even if the miner signed it.
        let (mut coord, miner, mut job, payment) = setup();
        let ledger = FakeLedger::new(vec![(payment.clone(), true)]);
        for id in [0, LAST_JOB_ID + 1] {
            job.job_id = id;
            let (core, pk, sig) = miner.work(&job, coord.address(), payment.hash());
            let err = coord.attest(core, pk, sig, &ledger).expect_err("refused");
            assert_eq!(err, MockError::JobIdOutOfRange(id));
        }
        assert_eq!(ledger.lookups.get(), 0);
        // A job id is posted once.
        let err = coord
            .post_job(42, miner_address(), vec![])
            .expect_err("twice");
        assert_eq!(err, MockError::JobExists(42));
    }

    #[test]
    fn coordinator_attests_only_paid_jobs() {
        let (_, miner, job, payment) = setup();
        let coordinator = coordinator_address();
        let client = job.client;
        let stranger = SecretKey::from_seed([8; 32]);
        type Case = (&'static str, Vec<(Tx, bool)>, Hash);
        let cheap = pay(coordinator, job.price - 1, 2);
        let elsewhere = pay(miner_address(), job.price, 3);
        let by_stranger = Tx::signed(
            CHAIN,
            TxKind::Transfer {
                to: coordinator,
                amount: job.price,
            },
            &stranger,
            1,
            5_000,
        );
        let stake = Tx::signed(
            CHAIN,
            TxKind::Stake { amount: job.price },
            &client_key(),
            4,
            5_000,
        );
        let cases: Vec<Case> = vec![
            ("not on chain", vec![], payment.hash()),
            (
                "not committed",
                vec![(payment.clone(), false)],
                payment.hash(),
            ),
            (
                "less than the price",
                vec![(cheap.clone(), true)],
                cheap.hash(),
            ),
            (
                "from the job's client to this coordinator",
                vec![(elsewhere.clone(), true)],
                elsewhere.hash(),
            ),
            (
                "from the job's client to this coordinator",
                vec![(by_stranger.clone(), true)],
                by_stranger.hash(),
            ),
            ("is no transfer", vec![(stake.clone(), true)], stake.hash()),
        ];
        for (what, txs, pay_hash) in cases {
            let mut coord = Coordinator::devnet(CHAIN);
            coord
                .post_job(job.job_id, client, job.input.clone())
                .expect("post");
            let ledger = FakeLedger::new(txs);
            let (core, pk, sig) = miner.work(&job, coordinator, pay_hash);
            let err = coord.attest(core, pk, sig, &ledger).expect_err(what);
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
        // A node answering with another tx than the one asked for is caught.
        let mut forged = FakeLedger::new(vec![]);
        forged.txs.insert(
            payment.hash(),
            LookedUpTx {
                tx: pay(coordinator, job.price, 9),
                committed: true,
                height: Some(1),
            },
        );
        let mut coord = Coordinator::devnet(CHAIN);
        coord
            .post_job(job.job_id, client, job.input.clone())
            .expect("post");
        let (core, pk, sig) = miner.work(&job, coordinator, payment.hash());
        let err = coord.attest(core, pk, sig, &forged).expect_err("forged");
        assert_eq!(err, MockError::PaymentAnswerForged(payment.hash()));
    }

    #[test]
    fn coordinator_checks_the_work_and_the_miner_signature() {
        let (mut coord, miner, job, payment) = setup();
        let ledger = FakeLedger::new(vec![(payment.clone(), true)]);
        let address = coord.address();
        let (core, pk, sig) = miner.work(&job, address, payment.hash());

        let mut wrong = core.clone();
        wrong.output_hash = Hash::of(b"made up");
        let sig2 = miner.key().sign_digest(&wrong.digest(CHAIN));
        let err = coord.attest(wrong, pk, sig2, &ledger).expect_err("output");
        assert_eq!(err, MockError::WrongOutput(42));

        type Edit = fn(&mut ReceiptCore);
        let edits: [(&str, Edit); 4] = [
            ("coordinator", |c| c.coordinator = miner_address()),
            ("client", |c| c.client = miner_address()),
            ("compute_units", |c| c.compute_units += 1),
            ("price", |c| c.price -= 1),
        ];
        for (field, edit) in edits {
            let mut c = core.clone();
            edit(&mut c);
            let s = miner.key().sign_digest(&c.digest(CHAIN));
            let err = coord.attest(c, pk, s, &ledger).expect_err(field);
            assert_eq!(err, MockError::Mismatch { job_id: 42, field });
        }

        let err = coord
            .attest(core.clone(), pk, Signature([0; 64]), &ledger)
            .expect_err("bad sig");
        assert!(matches!(err, MockError::BadMinerSignature { .. }), "{err}");
        let err = coord
            .attest(core.clone(), coordinator_key().public(), sig, &ledger)
            .expect_err("wrong key");
        assert!(err.to_string().contains("not the key"), "{err}");
        let mut unknown = core;
        unknown.job_id = 43;
        let s = miner.key().sign_digest(&unknown.digest(CHAIN));
        let err = coord.attest(unknown, pk, s, &ledger).expect_err("unknown");
        assert_eq!(err, MockError::UnknownJob(43));
        assert_eq!(ledger.lookups.get(), 0, "no lookup for a bad receipt");
    }

    #[test]
    fn quotes_and_outputs_are_deterministic() {
        assert_eq!(quote_units(b""), UNITS_PER_QUOTE_STEP);
        assert_eq!(quote_units(&[0; 16]), UNITS_PER_QUOTE_STEP);
        assert_eq!(quote_units(&[0; 17]), 2 * UNITS_PER_QUOTE_STEP);
        assert_eq!(job_output(1, b"x"), job_output(1, b"x"));
        assert_ne!(job_output(1, b"x"), job_output(2, b"x"));
        assert_ne!(job_output(1, b"x"), job_output(1, b"y"));
        let m = Miner::devnet(CHAIN);
        assert_ne!(
            m.receipt_id(1, &Hash::of(b"a")),
            m.receipt_id(1, &Hash::of(b"b"))
        );
    }

    #[test]
    fn genesis_registers_the_coordinator_and_key_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let key = SecretKey::from_seed([1; 32]);
        let mut g = Genesis::dev(CHAIN, &[&key], &[]);
        add_to_genesis(&mut g);
        g.validate().expect("valid genesis");
        assert_eq!(g.coordinators, vec![coordinator_address()]);
        let balance = |a: Address| {
            g.accounts
                .iter()
                .find(|x| x.address == a)
                .map(|x| x.balance)
        };
        assert_eq!(balance(coordinator_address()), Some(COORDINATOR_BALANCE));
        assert_eq!(balance(miner_address()), Some(MINER_BALANCE));

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(crate::accounts::ACCOUNTS_DIR)).expect("mkdir");
        write_key_files(dir.path()).expect("write");
        for (path, address) in [
            (coordinator_key_path(dir.path()), coordinator_address()),
            (miner_key_path(dir.path()), miner_address()),
        ] {
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            let k = aitbc_node::keys::load_validator_key(&path).expect("a key file");
            assert_eq!(Address::of(&k.public()), address);
        }
        assert!(write_key_files(dir.path()).is_err(), "overwrote a key file");
    }
}
