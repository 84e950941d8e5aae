//! The load, decided and signed before the measured window: which account sends which
//! transfer at which nonce, signed and encoded, so the window measures the chain and not the
//! generator's signing speed.
//!
//! Each sending account gets a run of consecutive nonces from its committed nonce + 1. The
//! recipients are other sending accounts picked by a fixed pseudo-random sequence (SplitMix64
//! of the sender and nonce): deterministic, so two runs offer the same load, and spread, so no
//! single account's state entry becomes a hot spot.

use super::pace;
use aitbc_chain::{Address, Hash, PublicKey, SecretKey, Signature, Tx, TxKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Most transactions pre-signed for one run. Each costs about 240 bytes here (164 encoded,
/// its hash, its submit time, allocation overhead), so this caps the generator near 240 MB;
/// it covers the rate-0 bound of 16,000 tx/s for 60 s. A run that would need more is signed up
/// to the cap and says so; if its senders run dry before the window ends, the report says when.
pub const MAX_PRESIGNED: u64 = 1_000_000;
/// The rate a rate-0 ("as fast as the chain takes them") run pre-signs for: 60% above the
/// SPEC §9 target and as much as [`MAX_PRESIGNED`] allows for 60 s. (At 15,000 a 4-validator
/// devnet with 100 ms blocks committed them all and ran dry at 57.5 s.)
pub const UNPACED_PRESIGN_RATE: u64 = 16_000;
/// What each transfer moves: 0.001 AIT, small enough that any funded account pays for a whole
/// run, and non-zero so the transfer really changes two balances.
pub const TRANSFER_AMOUNT: u64 = aitbc_chain::params::AIT / 1_000;

/// One pre-signed transaction.
pub struct Presigned {
    /// Canonical bytes, as `sendRawTx` takes them (hex-encoded at send time: half the memory).
    pub bytes: Box<[u8]>,
    pub hash: Hash,
}

/// A sending account and everything it will send.
pub struct BenchAccount {
    /// Devnet account number (`accounts/account<index>`).
    pub index: u32,
    /// Nonce of `txs[0]`: the committed nonce + 1 when the run was planned.
    pub first_nonce: u64,
    pub txs: Vec<Presigned>,
    /// When each tx was last submitted, in µs since the run's epoch, plus one (0 = never).
    pub sent_at_us: Box<[AtomicU64]>,
    /// The highest nonce of this account seen in a committed block (starts at its nonce when
    /// planned). The senders keep within [`pace::NONCE_WINDOW`] of it.
    pub committed_nonce: AtomicU64,
}

impl BenchAccount {
    /// Nonce of `txs[pos]`.
    pub fn nonce_at(&self, pos: usize) -> u64 {
        self.first_nonce.saturating_add(pos as u64)
    }

    /// Whether the tx at `pos` may be sent now under the nonce window.
    pub fn may_send(&self, pos: usize) -> bool {
        pace::within_window(
            self.nonce_at(pos),
            self.committed_nonce.load(Ordering::Acquire),
        )
    }
}

/// The whole planned load.
pub struct Plan {
    pub accounts: Vec<BenchAccount>,
    /// Tx hash → (index in `accounts`, position in its `txs`): how the follower recognises our
    /// txs in a block it reads as hashes only.
    pub by_hash: HashMap<Hash, (u32, u32)>,
    pub total: u64,
    pub fee: u64,
    /// The run asked for more than [`MAX_PRESIGNED`] and was cut to it.
    pub capped: bool,
}

/// How many txs to pre-sign for `duration_s` at `rate` (0 = unpaced), and whether the cap cut
/// it.
pub fn presign_count(rate: u64, duration_s: u64) -> (u64, bool) {
    let rate = if rate == 0 {
        UNPACED_PRESIGN_RATE
    } else {
        rate
    };
    let wanted = rate.saturating_mul(duration_s);
    (wanted.min(MAX_PRESIGNED), wanted > MAX_PRESIGNED)
}

/// SplitMix64: a fixed, well-mixed sequence, so recipients look random yet every run (and
/// every test) offers the same load.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The recipient (a position among `n` pool addresses) of the transfer at `nonce` from the
/// sender at pool position `sender`: never the sender itself when `n > 1`.
pub fn recipient(sender: usize, nonce: u64, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let r = (splitmix64((sender as u64) << 40 ^ nonce) % n as u64) as usize;
    if r == sender {
        (r + 1) % n
    } else {
        r
    }
}

/// One sending account's inputs to [`sign_all`].
pub struct AccountInput {
    pub index: u32,
    pub key: SecretKey,
    /// Its committed nonce.
    pub nonce: u64,
    /// How many txs it sends.
    pub count: u64,
}

/// Signs every account's transfers on all cores. `recipients` is the address pool (the
/// senders' own addresses; with one sender, one extra devnet account); `progress` counts
/// signed txs for the caller's progress line; setting `stop` (Ctrl-C) cuts signing short, the
/// accounts then holding fewer txs than asked.
pub fn sign_all(
    chain_id: &str,
    inputs: Vec<AccountInput>,
    recipients: &[Address],
    base_fee: u64,
    fee_per_byte: u64,
    progress: &AtomicUsize,
    stop: &AtomicBool,
) -> Vec<BenchAccount> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = inputs.len().div_ceil(threads).max(1);
    let mut inputs = inputs.into_iter().enumerate().collect::<Vec<_>>();
    let mut chunks = Vec::new();
    while !inputs.is_empty() {
        let rest = inputs.split_off(chunk.min(inputs.len()));
        chunks.push(std::mem::replace(&mut inputs, rest));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(pos, input)| {
                            let fees = (base_fee, fee_per_byte);
                            sign_account(chain_id, pos, input, recipients, fees, progress, stop)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A signing thread can only fail by panicking (a bug); re-raise it here.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn sign_account(
    chain_id: &str,
    pos: usize,
    input: AccountInput,
    recipients: &[Address],
    (base_fee, fee_per_byte): (u64, u64),
    progress: &AtomicUsize,
    stop: &AtomicBool,
) -> BenchAccount {
    let pubkey = input.key.public();
    let first_nonce = input.nonce.saturating_add(1);
    let mut txs = Vec::with_capacity(usize::try_from(input.count).unwrap_or(0));
    for i in 0..input.count {
        let nonce = first_nonce.saturating_add(i);
        let to = recipients[recipient(pos, nonce, recipients.len())];
        let tx = transfer(
            chain_id,
            &input.key,
            pubkey,
            to,
            nonce,
            base_fee,
            fee_per_byte,
        );
        txs.push(Presigned {
            bytes: tx.encode().into_boxed_slice(),
            hash: tx.hash(),
        });
        if i % 256 == 255 {
            progress.fetch_add(256, Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    progress.fetch_add(txs.len() % 256, Ordering::Relaxed);
    let sent_at_us = (0..txs.len()).map(|_| AtomicU64::new(0)).collect();
    BenchAccount {
        index: input.index,
        first_nonce,
        txs,
        sent_at_us,
        committed_nonce: AtomicU64::new(input.nonce),
    }
}

/// A transfer paying exactly the minimum fee for its encoded size (`base_fee + fee_per_byte ×
/// bytes`, the schedule `estimateFee` reports), signed.
pub fn transfer(
    chain_id: &str,
    key: &SecretKey,
    pubkey: PublicKey,
    to: Address,
    nonce: u64,
    base_fee: u64,
    fee_per_byte: u64,
) -> Tx {
    let mut tx = Tx {
        chain_id: chain_id.to_string(),
        kind: TxKind::Transfer {
            to,
            amount: TRANSFER_AMOUNT,
        },
        sender_pubkey: pubkey,
        nonce,
        fee: 0,
        sig: Signature([0; 64]),
    };
    // Integers and the signature are fixed-width in the canonical encoding, so the size (and
    // with it the minimum fee) does not depend on the fee or signature filled in here.
    tx.fee = tx.min_fee(base_fee, fee_per_byte);
    tx.sig = key.sign_digest(&tx.hash());
    tx
}

impl Plan {
    /// Gathers the signed accounts into a plan.
    pub fn new(accounts: Vec<BenchAccount>, fee: u64, capped: bool) -> Plan {
        let mut by_hash = HashMap::with_capacity(accounts.iter().map(|a| a.txs.len()).sum());
        for (i, a) in accounts.iter().enumerate() {
            for (pos, tx) in a.txs.iter().enumerate() {
                // Both fit: accounts and txs per account are far below u32::MAX.
                by_hash.insert(tx.hash, (i as u32, pos as u32));
            }
        }
        let total = accounts.iter().map(|a| a.txs.len() as u64).sum();
        Plan {
            accounts,
            by_hash,
            total,
            fee,
            capped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{account_address, account_key};

    #[test]
    fn presign_bound_and_cap() {
        assert_eq!(presign_count(200, 5), (1_000, false));
        assert_eq!(presign_count(0, 60), (960_000, false));
        assert_eq!(presign_count(0, 120), (MAX_PRESIGNED, true));
        assert_eq!(presign_count(u64::MAX, u64::MAX), (MAX_PRESIGNED, true));
    }

    #[test]
    fn recipients_are_deterministic_spread_and_never_the_sender() {
        let n = 50;
        let mut hits = vec![0u32; n];
        for sender in 0..n {
            for nonce in 1..=200 {
                let r = recipient(sender, nonce, n);
                assert!(r < n);
                assert_ne!(r, sender);
                assert_eq!(r, recipient(sender, nonce, n));
                hits[r] += 1;
            }
        }
        // 10,000 draws over 50 recipients: each gets 200 on average; none is starved or hot.
        assert!(hits.iter().all(|&h| (100..=300).contains(&h)), "{hits:?}");
        assert_eq!(recipient(0, 5, 1), 0);
    }

    #[test]
    fn signs_consecutive_nonces_at_the_minimum_fee() {
        let progress = AtomicUsize::new(0);
        let inputs = (0..3u32)
            .map(|i| AccountInput {
                index: i,
                key: account_key(i),
                nonce: u64::from(i) * 10,
                count: 300,
            })
            .collect();
        let pool: Vec<Address> = (0..3).map(account_address).collect();
        let stop = AtomicBool::new(false);
        let accounts = sign_all("ait-test", inputs, &pool, 1_000, 10, &progress, &stop);
        assert_eq!(progress.load(Ordering::Relaxed), 900);
        assert_eq!(accounts.len(), 3);
        let plan = Plan::new(accounts, 0, false);
        assert_eq!(plan.total, 900);
        assert_eq!(plan.by_hash.len(), 900, "every tx, none twice");
        for (i, a) in plan.accounts.iter().enumerate() {
            assert_eq!(a.index, i as u32, "order kept");
            assert_eq!(plan.by_hash[&a.txs[7].hash], (i as u32, 7));
            assert_eq!(a.first_nonce, i as u64 * 10 + 1);
            assert_eq!(a.txs.len(), 300);
            for (k, p) in a.txs.iter().enumerate() {
                let tx = Tx::decode(&p.bytes, 1 << 16).expect("decodes");
                assert_eq!(tx.hash(), p.hash);
                assert_eq!(tx.nonce, a.first_nonce + k as u64);
                assert_eq!(a.nonce_at(k), tx.nonce);
                assert_eq!(tx.fee, tx.min_fee(1_000, 10), "exactly the minimum fee");
                assert!(tx.verify_signature(&p.hash).is_ok());
                let TxKind::Transfer { to, amount } = tx.kind else {
                    panic!("not a transfer");
                };
                assert_ne!(to, account_address(a.index));
                assert_eq!(amount, TRANSFER_AMOUNT);
            }
        }
        // The window: 48 ahead of the committed nonce, not 49.
        let a = &plan.accounts[0];
        assert!(a.may_send(47), "nonce 48");
        assert!(!a.may_send(48), "nonce 49");
        a.committed_nonce.store(10, Ordering::Release);
        assert!(a.may_send(57));
    }
}
