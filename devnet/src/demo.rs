//! `aitbc-devnet demo`: the whole compute-receipt flow of SPEC §4 against a running devnet,
//! with the balances and the total supply before and after, and the supply change explained.
//!
//! The cast (see [`crate::mocks`]): a client (one of the funded devnet accounts) posts jobs to
//! the coordinator and pays each job's price to it with a `Transfer`; the miner computes each
//! job and signs the receipt core; the coordinator checks the payment is committed and attests;
//! the miner claims with a `ReceiptClaim` (paying its own fee). Then one ordinary transfer, and
//! two replays of an already-claimed receipt, which must not mint again.
//!
//! The expectation is computed from the receipts the demo claimed and the rule the chain
//! executes (`Executor::claim` in `chain/src/execution.rs`), with the parameters from
//! `getGenesis` — the node has no RPC for the current parameters, so a devnet whose mint
//! parameters were changed by `ParamUpdate` shows a mismatch, which is the honest answer. The
//! demo fails (non-zero exit) when any observed change differs from the expectation. Anything
//! else moving the same accounts at the same time (a receipt claimed by someone else, a bench
//! using the client account) shows up as a mismatch too. The default client is the last devnet
//! account (the relayer of the replay the one before it), because `bench` takes its senders from
//! account0 onwards: a `bench --accounts N` below the devnet's count leaves both alone.

use crate::mocks::{self, Coordinator, Miner, LAST_JOB_ID};
use crate::record::Devnet;
use crate::table::thousands;
use aitbc_chain::genesis::Genesis;
use aitbc_chain::params::{Params, BPS};
use aitbc_chain::receipt::Receipt;
use aitbc_chain::{Address, Hash, SecretKey, Tx, TxKind};
use aitbc_node::client::rpc::{RpcClient, RpcError};
use aitbc_node::client::{build_tx, COMMIT_TIMEOUT};
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Jobs the demo runs unless `--jobs` says otherwise.
pub const DEFAULT_JOBS: u32 = 3;
/// Most jobs one demo runs: each is two commits, so this already takes minutes at the default
/// block time; a load test is `bench`'s business.
pub const MAX_JOBS: u32 = 100;
/// The ordinary transfer of the demo: 1.5 AIT from the client to the demo recipient.
pub const TRANSFER_AMOUNT: u64 = 1_500_000;
/// Per-call timeout of the reads (balances, supply, getTx).
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Inputs of the demo's jobs (cycled): different sizes, so the quotes and mints differ.
const PROMPTS: [&str; 4] = [
    "embed: aitbc",
    "summarise: the quick brown fox",
    "translate to French: compute receipts back the token supply",
    "classify image sha256:9f2c…",
];

/// What `demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub jobs: u32,
    /// Index of the node whose RPC every call goes to.
    pub rpc_node: usize,
    /// Devnet account playing the client; `None` = the last funded account.
    pub client: Option<u32>,
}

/// What a receipt claim mints, by the chain's rule: `compute_units × mint_per_unit` to the
/// miner, and on top `coordinator_bps` and `treasury_bps` of that (rounded down) to the
/// coordinator and the treasury.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mint {
    pub miner: u64,
    pub coordinator: u64,
    pub treasury: u64,
}

impl Mint {
    /// The mint of a receipt of `compute_units` under `params`; `None` where the chain would
    /// refuse the claim as an overflow.
    pub fn of(compute_units: u64, params: &Params) -> Option<Mint> {
        let miner = compute_units.checked_mul(params.mint_per_unit)?;
        let share = |bps: u64| (u128::from(miner) * u128::from(bps) / u128::from(BPS)) as u64;
        Some(Mint {
            miner,
            coordinator: share(params.coordinator_bps),
            treasury: share(params.treasury_bps),
        })
    }

    /// New units in all: what the total supply grows by.
    pub fn total(&self) -> u64 {
        self.miner
            .saturating_add(self.coordinator)
            .saturating_add(self.treasury)
    }
}

/// One committed tx the demo sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub tx: Tx,
    pub hash: Hash,
    pub height: u64,
}

/// One job, paid, computed, attested and claimed.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub job: mocks::Job,
    pub payment: Sent,
    pub receipt: Receipt,
    pub claim: Sent,
    pub mint: Mint,
}

/// How the relayed replay (the same receipt in a new tx) was refused at admission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRefusal {
    pub reason: String,
    pub message: String,
}

/// The outcome of the demo, for callers that want more than the printout.
#[derive(Clone, Debug)]
pub struct DemoReport {
    pub client: Address,
    pub treasury: Address,
    pub recipient: Address,
    pub jobs: Vec<ClaimedJob>,
    pub transfer: Sent,
    pub supply_before: u64,
    pub supply_after: u64,
    /// Named reason the node gave for the exact re-submission of the first claim tx.
    pub exact_replay_reason: String,
    pub relayed_replay: ReplayRefusal,
}

/// The recipient of the demo's ordinary transfer: an address of a public seed, so no devnet
/// account's expectation is disturbed by it.
pub fn recipient_address() -> Address {
    Address::of(&SecretKey::from_seed(Hash::of(b"aitbc devnet demo recipient").0).public())
}

/// Runs the demo against the devnet in `opts.dir`, printing as it goes. Fails (after printing
/// the table) if any observed change differs from the expectation or a replay was not refused.
pub fn run(opts: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport> {
    if opts.jobs == 0 || opts.jobs > MAX_JOBS {
        bail!("--jobs {}: the demo runs 1 to {MAX_JOBS} jobs", opts.jobs);
    }
    let (_, devnet) = crate::status::load(&opts.dir)?;
    let node = devnet.nodes.get(opts.rpc_node).ok_or_else(|| {
        anyhow!(
            "--rpc-node {}: the devnet has {} nodes (0 to {})",
            opts.rpc_node,
            devnet.nodes.len(),
            devnet.nodes.len() - 1
        )
    })?;
    if devnet.accounts < 2 {
        bail!(
            "the devnet in {} funded {} accounts; the demo needs 2 (a client and a relayer for \
             the replay): make one with `aitbc-devnet up --accounts 2` or more",
            opts.dir.display(),
            devnet.accounts
        );
    }
    let client_index = opts.client.unwrap_or(devnet.accounts - 1);
    if client_index >= devnet.accounts {
        bail!(
            "--client {client_index}: the devnet funded accounts 0 to {}",
            devnet.accounts - 1
        );
    }
    let relayer_index = if client_index == 0 {
        1
    } else {
        client_index - 1
    };
    let chain = Chain::connect(&node.rpc_url(), opts.rpc_node, &devnet)?;
    Demo {
        chain,
        client_index,
        relayer_index,
        jobs: opts.jobs,
        out,
    }
    .run()
}

/// The chain as the demo reaches it: one node's RPC, and what it said about the chain.
struct Chain {
    read: RpcClient,
    commit: RpcClient,
    chain_id: String,
    genesis: Genesis,
}

#[derive(Deserialize)]
struct StatusAnswer {
    chain_id: String,
}

#[derive(Deserialize)]
struct BalanceAnswer {
    balance: u64,
    nonce: u64,
}

#[derive(Deserialize)]
struct SupplyAnswer {
    supply: u64,
    height: u64,
}

#[derive(Deserialize)]
struct FeeAnswer {
    fee: u64,
}

#[derive(Deserialize)]
struct SubmittedAnswer {
    hash: Hash,
    status: String,
    height: Option<u64>,
}

impl Chain {
    fn connect(url: &str, index: usize, devnet: &Devnet) -> Result<Chain> {
        let read = RpcClient::with_timeout(url, READ_TIMEOUT)?;
        let commit = RpcClient::with_timeout(url, COMMIT_TIMEOUT)?;
        let status: StatusAnswer = call(&read, "status", json!({})).with_context(|| {
            format!("node{index} does not answer: is the devnet up? (`aitbc-devnet status`)")
        })?;
        if status.chain_id != devnet.chain_id {
            bail!(
                "node{index} at {url} runs chain {:?}, the devnet record says {:?}: another \
                 program holds its port",
                status.chain_id,
                devnet.chain_id
            );
        }
        let genesis: Genesis = call(&read, "getGenesis", json!({}))?;
        if !genesis.coordinators.contains(&mocks::coordinator_address()) {
            bail!(
                "this devnet's genesis does not register the devnet coordinator {} (it was made \
                 by an older aitbc-devnet): `aitbc-devnet down --clean` and `up` a new one",
                mocks::coordinator_address()
            );
        }
        Ok(Chain {
            read,
            commit,
            chain_id: status.chain_id,
            genesis,
        })
    }

    fn account(&self, address: &Address) -> Result<BalanceAnswer> {
        call(&self.read, "getBalance", json!({ "address": address }))
    }

    fn supply(&self) -> Result<SupplyAnswer> {
        call(&self.read, "getSupply", json!({}))
    }

    /// Signs `kind` as `key` at `nonce` (default: the next one) with the node's fee estimate
    /// (or more, if `min_fee` asks for more).
    fn sign(&self, key: &SecretKey, kind: TxKind, nonce: Option<u64>, min_fee: u64) -> Result<Tx> {
        let nonce = match nonce {
            Some(n) => n,
            None => self
                .account(&Address::of(&key.public()))?
                .nonce
                .checked_add(1)
                .context("nonce exhausted")?,
        };
        build_tx(&self.chain_id, kind, key, nonce, None, |bytes| {
            let fee: FeeAnswer = call(&self.read, "estimateFee", json!({ "bytes": bytes }))?;
            Ok(fee.fee.max(min_fee))
        })
    }

    /// Sends `tx` and waits for its commit.
    fn send_committed(&self, tx: Tx) -> Result<Sent> {
        let method = match tx.kind {
            TxKind::ReceiptClaim { .. } => "submitReceipt",
            _ => "sendTx",
        };
        let hash = tx.hash();
        let answer: SubmittedAnswer =
            call(&self.commit, method, json!({ "tx": tx, "wait": "commit" }))
                .with_context(|| format!("{method} of {} tx {hash}", tx.kind.name()))?;
        match (answer.status.as_str(), answer.height) {
            ("committed", Some(height)) if answer.hash == hash => Ok(Sent { tx, hash, height }),
            _ => bail!(
                "{method} of tx {hash}: the node answered {} {:?} at height {:?}, not its commit",
                answer.hash,
                answer.status,
                answer.height
            ),
        }
    }
}

/// Calls `method` and reads its answer as `T`.
fn call<T: DeserializeOwned>(client: &RpcClient, method: &str, params: Value) -> Result<T> {
    let answer = client
        .call(method, params)
        .with_context(|| format!("{method} at {}", client.url()))?;
    serde_json::from_value(answer).with_context(|| format!("{method}: unexpected answer"))
}

/// The accounts whose balances the demo shows, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Coordinator,
    Miner,
    Treasury,
    Recipient,
}

const ROLES: [Role; 5] = [
    Role::Client,
    Role::Coordinator,
    Role::Miner,
    Role::Treasury,
    Role::Recipient,
];

struct Snapshot {
    balances: Vec<u64>,
    supply: u64,
    height: u64,
}

struct Demo<'a> {
    chain: Chain,
    client_index: u32,
    relayer_index: u32,
    jobs: u32,
    out: &'a mut dyn Write,
}

impl Demo<'_> {
    fn address(&self, role: Role) -> Address {
        match role {
            Role::Client => crate::accounts::account_address(self.client_index),
            Role::Coordinator => mocks::coordinator_address(),
            Role::Miner => mocks::miner_address(),
            Role::Treasury => self.chain.genesis.treasury,
            Role::Recipient => recipient_address(),
        }
    }

    fn label(&self, role: Role) -> String {
        match role {
            Role::Client => format!("client (account{})", self.client_index),
            Role::Coordinator => "coordinator".into(),
            Role::Miner => "miner".into(),
            Role::Treasury => "treasury".into(),
            Role::Recipient => "transfer recipient".into(),
        }
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let balances = ROLES
            .iter()
            .map(|r| Ok(self.chain.account(&self.address(*r))?.balance))
            .collect::<Result<Vec<u64>>>()?;
        let supply = self.chain.supply()?;
        Ok(Snapshot {
            balances,
            supply: supply.supply,
            height: supply.height,
        })
    }

    // Progress lines are best effort: a closed stdout must not abort a half-done flow.
    fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    fn run(mut self) -> Result<DemoReport> {
        let params = self.chain.genesis.params.clone();
        let client_key = crate::accounts::account_key(self.client_index);
        let client = self.address(Role::Client);
        let mut coordinator = Coordinator::devnet(&self.chain.chain_id);
        let miner = Miner::devnet(&self.chain.chain_id);
        self.say(format!(
            "demo on chain {} via {} — the cast: client {client} (account{}), coordinator {}, \
             miner {}",
            self.chain.chain_id,
            self.chain.read.url(),
            self.client_index,
            coordinator.address(),
            miner.address()
        ));
        for id in [0, LAST_JOB_ID + 1] {
            if let Err(e) = Coordinator::check_job_id(id) {
                self.say(format!("coordinator bound: {e}"));
            }
        }

        let before = self.snapshot()?;
        let span = LAST_JOB_ID - u64::from(MAX_JOBS);
        let first_job = 1 + (before.height.wrapping_mul(u64::from(MAX_JOBS)) % span);
        let mut jobs = Vec::new();
        for k in 0..u64::from(self.jobs) {
            let job_id = first_job + k;
            let prompt = PROMPTS[(k % PROMPTS.len() as u64) as usize];
            let job = coordinator.post_job(job_id, client, prompt.as_bytes().to_vec())?;
            let pay = self.chain.sign(
                &client_key,
                TxKind::Transfer {
                    to: coordinator.address(),
                    amount: job.price,
                },
                None,
                0,
            )?;
            let payment = self.chain.send_committed(pay)?;
            let (core, pk, sig) = miner.work(&job, coordinator.address(), payment.hash);
            let receipt = coordinator
                .attest(core, pk, sig, &self.chain.read)
                .with_context(|| format!("the coordinator refused job {job_id}"))?;
            let mint = Mint::of(job.compute_units, &params)
                .with_context(|| format!("job {job_id}: the mint overflows"))?;
            let claim_tx = self.chain.sign(
                miner.key(),
                TxKind::ReceiptClaim {
                    receipt: Box::new(receipt.clone()),
                },
                None,
                0,
            )?;
            let claim = self.chain.send_committed(claim_tx)?;
            self.say(format!(
                "job {job_id} ({:?}): {} compute units, price {} paid in tx {} (height {}); \
                 output {}; receipt {} claimed in tx {} (height {}): mints {} to the miner, {} \
                 to the coordinator, {} to the treasury",
                prompt,
                thousands(job.compute_units),
                thousands(job.price),
                payment.hash,
                payment.height,
                receipt.core.output_hash,
                receipt.core.receipt_id,
                claim.hash,
                claim.height,
                thousands(mint.miner),
                thousands(mint.coordinator),
                thousands(mint.treasury)
            ));
            jobs.push(ClaimedJob {
                job,
                payment,
                receipt,
                claim,
                mint,
            });
        }
        let recipient = recipient_address();
        let transfer_tx = self.chain.sign(
            &client_key,
            TxKind::Transfer {
                to: recipient,
                amount: TRANSFER_AMOUNT,
            },
            None,
            0,
        )?;
        let transfer = self.chain.send_committed(transfer_tx)?;
        self.say(format!(
            "ordinary transfer: {} units from the client to {recipient} in tx {} (height {})",
            thousands(TRANSFER_AMOUNT),
            transfer.hash,
            transfer.height
        ));

        let after = self.snapshot()?;
        let expected = expected_changes(&jobs, &transfer);
        let mut problems = Vec::new();
        self.say("");
        self.say(self.table(&before, &after, &expected));
        self.explain(&params, &jobs, &before, &after);
        for (i, role) in ROLES.iter().enumerate() {
            let observed = i128::from(after.balances[i]) - i128::from(before.balances[i]);
            if observed != expected.balance(*role) {
                problems.push(format!(
                    "{} changed by {}, expected {}",
                    self.label(*role),
                    signed(observed),
                    signed(expected.balance(*role))
                ));
            }
        }
        let supply_change = i128::from(after.supply) - i128::from(before.supply);
        if supply_change != i128::from(expected.supply) {
            problems.push(format!(
                "total supply changed by {}, expected {}",
                signed(supply_change),
                signed(i128::from(expected.supply))
            ));
        }

        self.say("");
        let first = jobs.first().context("the demo ran no job")?;
        let (exact_replay_reason, relayed_replay) = self.replay(first, &mut problems)?;
        let last = self.snapshot()?;
        if last.supply != after.supply || last.balances != after.balances {
            problems.push(format!(
                "the replays changed the supply or a balance (supply {} → {})",
                thousands(after.supply),
                thousands(last.supply)
            ));
        } else {
            self.say(format!(
                "after the replays: supply still {} at height {}, and no tracked balance moved",
                thousands(last.supply),
                last.height
            ));
        }

        if !problems.is_empty() {
            bail!(
                "observed ≠ expected: {} (was anything else using these accounts?)",
                problems.join("; ")
            );
        }
        self.say("result: every observed change matches the rule");
        Ok(DemoReport {
            client,
            treasury: self.address(Role::Treasury),
            recipient,
            jobs,
            transfer,
            supply_before: before.supply,
            supply_after: after.supply,
            exact_replay_reason,
            relayed_replay,
        })
    }

    fn table(&self, before: &Snapshot, after: &Snapshot, expected: &Expected) -> String {
        let mut rows: Vec<Vec<String>> = ROLES
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let observed = i128::from(after.balances[i]) - i128::from(before.balances[i]);
                row(
                    self.label(*role),
                    self.address(*role).to_string(),
                    before.balances[i],
                    after.balances[i],
                    observed,
                    expected.balance(*role),
                )
            })
            .collect();
        rows.push(row(
            "total supply".into(),
            format!("heights {} → {}", before.height, after.height),
            before.supply,
            after.supply,
            i128::from(after.supply) - i128::from(before.supply),
            i128::from(expected.supply),
        ));
        crate::table::render(
            &[
                "account", "address", "before", "after", "change", "expected", "",
            ],
            &rows,
        )
    }

    fn explain(
        &mut self,
        params: &Params,
        jobs: &[ClaimedJob],
        before: &Snapshot,
        after: &Snapshot,
    ) {
        let pct = |bps: u64| format!("{}.{:02}%", bps / 100, bps % 100);
        self.say(format!(
            "Why the supply changed (ReceiptClaim in chain/src/execution.rs; params from \
             getGenesis: mint_per_unit {}, coordinator_bps {} = {}, treasury_bps {} = {}):",
            thousands(params.mint_per_unit),
            params.coordinator_bps,
            pct(params.coordinator_bps),
            params.treasury_bps,
            pct(params.treasury_bps)
        ));
        let mut total = 0u64;
        for j in jobs {
            total = total.saturating_add(j.mint.total());
            self.say(format!(
                "  job {}: {} units × {} = {} to the miner, + {} to the coordinator, + {} to \
                 the treasury = {} new units",
                j.job.job_id,
                thousands(j.job.compute_units),
                thousands(params.mint_per_unit),
                thousands(j.mint.miner),
                thousands(j.mint.coordinator),
                thousands(j.mint.treasury),
                thousands(j.mint.total())
            ));
        }
        let observed = i128::from(after.supply) - i128::from(before.supply);
        let verdict = if observed == i128::from(total) {
            "match"
        } else {
            "MISMATCH"
        };
        self.say(format!(
            "  expected supply change {}, observed {} ({verdict})",
            signed(i128::from(total)),
            signed(observed)
        ));
        let prices: u64 = jobs.iter().map(|j| j.job.price).sum();
        self.say(format!(
            "  Not in the supply: prices ({} units) moved client → coordinator → miner, and \
             fees went from the senders to the block proposers (validators, not shown).",
            thousands(prices)
        ));
    }

    /// Replays the first job's receipt twice: the exact claim tx again, and the same receipt
    /// in a new tx from another account (anyone may submit a claim). Neither may mint again.
    fn replay(
        &mut self,
        first: &ClaimedJob,
        problems: &mut Vec<String>,
    ) -> Result<(String, ReplayRefusal)> {
        let id = first.receipt.core.receipt_id;
        self.say(format!(
            "Replaying receipt {id} (claimed at height {}):",
            first.claim.height
        ));
        let exact = self.chain.commit.call(
            "submitReceipt",
            json!({ "tx": first.claim.tx, "wait": "mempool" }),
        );
        let exact_reason = match exact {
            Err(RpcError::Rpc {
                reason, message, ..
            }) => {
                let reason = reason.unwrap_or_else(|| "(no reason)".into());
                self.say(format!(
                    "  the same claim tx again: rejected, reason {reason}: {message}"
                ));
                reason
            }
            Err(e) => return Err(e).context("re-submitting the first claim tx"),
            Ok(answer) => {
                problems.push(format!(
                    "the exact replayed claim tx was accepted: {answer}"
                ));
                String::new()
            }
        };

        let relayer_key = crate::accounts::account_key(self.relayer_index);
        let relayed = self.chain.sign(
            &relayer_key,
            TxKind::ReceiptClaim {
                receipt: Box::new(first.receipt.clone()),
            },
            None,
            0,
        )?;
        let relayed_hash = relayed.hash();
        let answer = self
            .chain
            .commit
            .call("submitReceipt", json!({ "tx": relayed, "wait": "mempool" }));
        let refusal = match answer {
            Err(RpcError::Rpc {
                reason, message, ..
            }) => {
                let reason = reason.unwrap_or_else(|| "(no reason)".into());
                self.say(format!(
                    "  the same receipt in a new tx from account{}: rejected, reason {reason}: \
                     {message}",
                    self.relayer_index
                ));
                ReplayRefusal { reason, message }
            }
            Err(e) => return Err(e).context("submitting the relayed replay"),
            Ok(answer) => {
                problems.push(format!(
                    "the same receipt in a new tx {relayed_hash} was admitted: {answer}"
                ));
                ReplayRefusal {
                    reason: String::new(),
                    message: String::new(),
                }
            }
        };
        Ok((exact_reason, refusal))
    }
}

/// Expected balance changes of the tracked accounts and of the supply.
struct Expected {
    client: i128,
    coordinator: i128,
    miner: i128,
    treasury: i128,
    recipient: i128,
    supply: u64,
}

impl Expected {
    fn balance(&self, role: Role) -> i128 {
        match role {
            Role::Client => self.client,
            Role::Coordinator => self.coordinator,
            Role::Miner => self.miner,
            Role::Treasury => self.treasury,
            Role::Recipient => self.recipient,
        }
    }
}

/// What the rules say the demo's txs do: the client pays prices, its transfer and its fees;
/// the coordinator receives the prices and pays them on to the miner, keeping its mint share;
/// the miner gets prices and mints and pays its claim fees; the treasury gets its share.
fn expected_changes(jobs: &[ClaimedJob], transfer: &Sent) -> Expected {
    let mut e = Expected {
        client: 0,
        coordinator: 0,
        miner: 0,
        treasury: 0,
        recipient: 0,
        supply: 0,
    };
    for j in jobs {
        let price = i128::from(j.job.price);
        e.client -= price + i128::from(j.payment.tx.fee);
        // The price comes in from the client and goes on to the miner: only the share stays.
        e.coordinator += i128::from(j.mint.coordinator);
        e.miner += price + i128::from(j.mint.miner) - i128::from(j.claim.tx.fee);
        e.treasury += i128::from(j.mint.treasury);
        e.supply = e.supply.saturating_add(j.mint.total());
    }
    if let TxKind::Transfer { amount, .. } = transfer.tx.kind {
        e.client -= i128::from(amount) + i128::from(transfer.tx.fee);
        e.recipient += i128::from(amount);
    }
    e
}

/// `+1,234` / `-1,234` / `0`.
fn signed(v: i128) -> String {
    let abs = thousands(u64::try_from(v.unsigned_abs()).unwrap_or(u64::MAX));
    match v {
        0 => "0".into(),
        v if v > 0 => format!("+{abs}"),
        _ => format!("-{abs}"),
    }
}

fn row(
    label: String,
    address: String,
    before: u64,
    after: u64,
    observed: i128,
    expected: i128,
) -> Vec<String> {
    vec![
        label,
        address,
        thousands(before),
        thousands(after),
        signed(observed),
        signed(expected),
        if observed == expected {
            "ok"
        } else {
            "MISMATCH"
        }
        .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_follows_the_chain_rule() {
        let p = Params::default();
        let m = Mint::of(200, &p).expect("mint");
        assert_eq!(m.miner, 200 * p.mint_per_unit);
        assert_eq!(m.coordinator, m.miner * p.coordinator_bps / BPS);
        assert_eq!(m.treasury, m.miner * p.treasury_bps / BPS);
        assert_eq!(m.total(), m.miner + m.coordinator + m.treasury);
        // Shares round down, as the chain's integer division does.
        let odd = Params {
            mint_per_unit: 3,
            coordinator_bps: 1,
            treasury_bps: 3_333,
            ..Params::default()
        };
        assert_eq!(
            Mint::of(1, &odd),
            Some(Mint {
                miner: 3,
                coordinator: 0,
                treasury: 0
            })
        );
        assert_eq!(Mint::of(u64::MAX, &p), None, "overflow is refused");
    }

    #[test]
    fn expected_changes_follow_the_flow() {
        let client = crate::accounts::account_key(1);
        let p = Params::default();
        let coordinator = mocks::coordinator_address();
        let mut coord = Coordinator::devnet("c");
        let job = coord
            .post_job(5, Address::of(&client.public()), b"x".to_vec())
            .expect("post");
        let sent = |tx: Tx| Sent {
            hash: tx.hash(),
            tx,
            height: 1,
        };
        let payment = sent(Tx::signed(
            "c",
            TxKind::Transfer {
                to: coordinator,
                amount: job.price,
            },
            &client,
            1,
            7,
        ));
        let miner = Miner::devnet("c");
        let (core, pk, sig) = miner.work(&job, coordinator, payment.hash);
        let receipt = Receipt {
            core,
            miner_pubkey: pk,
            miner_sig: sig,
            coordinator_pubkey: mocks::coordinator_key().public(),
            coordinator_sig: sig,
        };
        let claim = sent(Tx::signed(
            "c",
            TxKind::ReceiptClaim {
                receipt: Box::new(receipt.clone()),
            },
            miner.key(),
            1,
            11,
        ));
        let mint = Mint::of(job.compute_units, &p).expect("mint");
        let jobs = vec![ClaimedJob {
            job: job.clone(),
            payment,
            receipt,
            claim,
            mint,
        }];
        let transfer = sent(Tx::signed(
            "c",
            TxKind::Transfer {
                to: recipient_address(),
                amount: 50,
            },
            &client,
            2,
            13,
        ));
        let e = expected_changes(&jobs, &transfer);
        let price = i128::from(job.price);
        assert_eq!(e.client, -(price + 7 + 50 + 13));
        assert_eq!(e.coordinator, i128::from(mint.coordinator));
        assert_eq!(e.miner, price + i128::from(mint.miner) - 11);
        assert_eq!(e.treasury, i128::from(mint.treasury));
        assert_eq!(e.recipient, 50);
        assert_eq!(e.supply, mint.total());
    }

    #[test]
    fn signed_amounts_read_well() {
        assert_eq!(signed(0), "0");
        assert_eq!(signed(1_234_567), "+1,234,567");
        assert_eq!(signed(-1_000), "-1,000");
    }

    #[test]
    fn refuses_bad_options_before_touching_the_network() {
        let t = tempfile::tempdir().expect("tempdir");
        let opts = |jobs, dir: &std::path::Path| DemoOptions {
            dir: dir.to_path_buf(),
            jobs,
            rpc_node: 0,
            client: None,
        };
        let err = run(&opts(0, t.path()), &mut std::io::sink()).expect_err("0 jobs");
        assert!(err.to_string().starts_with("--jobs 0"), "{err:#}");
        let err = run(&opts(2, t.path()), &mut std::io::sink()).expect_err("no devnet");
        assert!(err.to_string().contains("not a devnet folder"), "{err:#}");
    }
}
