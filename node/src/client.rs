//! `aitbc-node tx …` and `aitbc-node query …`: a wallet-grade client that signs locally and
//! talks JSON-RPC to a node (SPEC §1, §7).
//!
//! Signing happens here, never on the node: the key file is read with the node's own key
//! reader (0600 enforced, contents never printed) and only the signed tx leaves the process.
//! Whatever the command does not pin by flag (chain id, nonce, fee) is asked of the node just
//! before signing, so the common case needs no flags beyond `--key`.
//!
//! Results are printed as pretty JSON on stdout, so scripts can pipe them to `jq`; a JSON-RPC
//! error is printed as a JSON object (`code`, `message`, `reason`) on stderr and the command
//! fails, so scripts can branch on the exit status and still read the named reason.

mod amount;
pub mod rpc;
#[cfg(test)]
mod test_server;

pub use amount::{parse_amount, AmountError, AIT_DECIMALS};
pub use rpc::{RpcClient, RpcError};

use crate::keys;
use aitbc_chain::receipt::Receipt;
use aitbc_chain::{Address, Hash, SecretKey, Tx, TxKind};
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the node's RPC listens by default (SPEC §8).
pub const DEFAULT_RPC: &str = "http://127.0.0.1:8080";
/// Time allowed for `sendTx` with `--wait commit`: the node answers only once a block holding
/// the tx is committed, which under load or a view change can take many block times.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest receipt file read. A receipt is well under 2 KiB of JSON and a tx at most
/// `max_tx_bytes` (32 KiB by default); anything bigger is not a receipt.
const MAX_RECEIPT_FILE: u64 = 1 << 20;
/// Default `getMempool` limit: enough to see what is queued without a megabyte of output.
const DEFAULT_MEMPOOL_LIMIT: u64 = 100;

/// How long `sendTx` / `submitReceipt` waits before answering (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    /// Answer with the hash at once.
    None,
    /// Answer after mempool admission.
    Mempool,
    /// Answer once the block holding the tx is committed, with its height.
    Commit,
}

impl WaitFor {
    /// The `wait` parameter as the RPC spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitFor::None => "none",
            WaitFor::Mempool => "mempool",
            WaitFor::Commit => "commit",
        }
    }
}

/// A transaction to sign and send.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum TxCommand {
    /// Send AIT to an address.
    Transfer {
        /// Recipient address, ait1…
        to: Address,
        /// Base units (1500000) or AIT with the `ait` suffix (1.5ait); 1 AIT = 10^6 units.
        #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
        amount: u64,
    },
    /// Bond stake (a validator needs at least params.min_stake).
    Stake {
        /// Base units or AIT with the `ait` suffix.
        #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
        amount: u64,
    },
    /// Begin unbonding stake; it returns after params.unbonding_blocks.
    Unstake {
        /// Base units or AIT with the `ait` suffix.
        #[arg(value_parser = amount_arg, allow_negative_numbers = true)]
        amount: u64,
    },
    /// Claim a compute receipt signed by its miner and a registered coordinator.
    ClaimReceipt {
        /// JSON file holding the signed receipt.
        receipt: PathBuf,
    },
}

/// `aitbc-node tx …`. The flags are global, so they may come before or after the subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct TxArgs {
    #[command(subcommand)]
    pub cmd: TxCommand,
    /// The node's JSON-RPC URL (plain http).
    #[arg(long, global = true, default_value = DEFAULT_RPC)]
    pub rpc: String,
    /// Signing key file (required): 64 hex characters, mode 0600, as `init` writes the
    /// validator key.
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Fee in base units or AIT [default: the node's `estimateFee` for this tx's size].
    #[arg(long, global = true, value_parser = amount_arg)]
    pub fee: Option<u64>,
    /// Nonce [default: the sender's committed nonce + 1]. Set it to queue several txs.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub nonce: Option<u64>,
    /// When the node answers.
    #[arg(long, global = true, value_enum, default_value_t = WaitFor::Commit)]
    pub wait: WaitFor,
    /// Chain id to sign for [default: the node's, from `status`].
    #[arg(long, global = true)]
    pub chain_id: Option<String>,
}

/// A block by height or by hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockAt {
    Height(u64),
    Hash(Hash),
}

impl std::str::FromStr for BlockAt {
    type Err = String;
    fn from_str(s: &str) -> Result<BlockAt, String> {
        if s.starts_with("0x") {
            return s.parse().map(BlockAt::Hash).map_err(|e| format!("{e}"));
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected a block height or a 0x-prefixed 32-byte hash".into());
        }
        s.parse()
            .map(BlockAt::Height)
            .map_err(|_| "height does not fit in 64 bits".into())
    }
}

/// Something to read from the node.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum QueryCommand {
    /// The committed head's header.
    Head,
    /// A block with its commit certificate.
    Block {
        /// Height, or block hash as 0x-prefixed hex.
        at: BlockAt,
    },
    /// A transaction, committed or pending.
    Tx {
        /// Tx hash, 0x-prefixed hex.
        hash: Hash,
    },
    /// An account's balance, nonce and stake at the head.
    Balance {
        /// Address, ait1…
        address: Address,
    },
    /// The current validator set with power and liveness.
    Validators,
    /// Chain id, head, peers, sync state.
    Status,
    /// The node's pending transactions.
    Mempool {
        /// Most txs to list (count and bytes always cover the whole pool).
        #[arg(long, default_value_t = DEFAULT_MEMPOOL_LIMIT)]
        limit: u64,
    },
    /// Total supply of AIT in base units.
    Supply,
}

/// `aitbc-node query …`.
#[derive(clap::Args, Debug, Clone)]
pub struct QueryArgs {
    #[command(subcommand)]
    pub cmd: QueryCommand,
    /// The node's JSON-RPC URL (plain http).
    #[arg(long, global = true, default_value = DEFAULT_RPC)]
    pub rpc: String,
}

/// clap's parser for amounts: the error text follows clap's "invalid value for <ARG>".
fn amount_arg(text: &str) -> Result<u64, AmountError> {
    parse_amount(text)
}

/// Signs and sends the tx, prints the node's answer (`{hash, status, height}`).
pub fn run_tx(args: TxArgs) -> Result<()> {
    let answer = send_tx(&args).map_err(report)?;
    print_json(&answer)
}

/// Asks the node, prints its answer.
pub fn run_query(args: QueryArgs) -> Result<()> {
    let answer = query(&args).map_err(report)?;
    print_json(&answer)
}

/// Prints a JSON-RPC error's code, message and reason to stderr as JSON, then hands the error
/// on (its `Display` says the same for a human; the binary prints it and exits non-zero).
fn report(err: anyhow::Error) -> anyhow::Error {
    if let Some(RpcError::Rpc {
        code,
        message,
        reason,
        ..
    }) = err.downcast_ref::<RpcError>()
    {
        let obj = json!({"code": code, "message": message, "reason": reason});
        // Best effort: failing to write stderr must not hide the error itself.
        if let Ok(text) = serde_json::to_string_pretty(&obj) {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
    err
}

fn print_json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("formatting the answer")?;
    writeln!(std::io::stdout().lock(), "{text}").context("writing to stdout")
}

/// Reads a signing key through the node's key-file reader, so the client enforces the same
/// format and 0600 rule as the node (a world-readable wallet key is refused, not used).
pub fn load_signing_key(path: &Path) -> Result<SecretKey> {
    keys::load_validator_key(path).context("--key")
}

/// Builds and signs a tx. Without an explicit `fee`, asks `min_fee_for(encoded_len)` (the
/// node's `estimateFee`) and signs with that fee.
///
/// The fee is part of what is encoded, but integers encode at fixed width, so the length does
/// not depend on the fee's value and one estimate settles it; the loop only guards against a
/// future variable-width codec, where a larger fee could need one more byte.
pub fn build_tx(
    chain_id: &str,
    kind: TxKind,
    key: &SecretKey,
    nonce: u64,
    fee: Option<u64>,
    mut min_fee_for: impl FnMut(u64) -> Result<u64>,
) -> Result<Tx> {
    if let Some(fee) = fee {
        return Ok(Tx::signed(chain_id, kind, key, nonce, fee));
    }
    // A fee that covers `len` bytes covers any shorter tx too (the rule grows with length).
    let mut len = Tx::signed(chain_id, kind.clone(), key, nonce, 0).encoded_len();
    for _ in 0..4 {
        let fee = min_fee_for(len as u64)?;
        let tx = Tx::signed(chain_id, kind.clone(), key, nonce, fee);
        if tx.encoded_len() <= len {
            return Ok(tx);
        }
        len = tx.encoded_len();
    }
    bail!("the fee estimate did not settle; pass --fee")
}

/// Reads a signed receipt from a JSON file, bounded in size.
pub fn read_receipt(path: &Path) -> Result<Receipt> {
    let ctx = || format!("receipt file {}", path.display());
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_RECEIPT_FILE + 1).read_to_end(&mut text))
        .with_context(ctx)?;
    if text.len() as u64 > MAX_RECEIPT_FILE {
        bail!("{}: larger than {MAX_RECEIPT_FILE} bytes", ctx());
    }
    serde_json::from_slice(&text).with_context(|| format!("{}: not a signed receipt", ctx()))
}

#[derive(Deserialize)]
struct StatusAnswer {
    chain_id: String,
}

#[derive(Deserialize)]
struct BalanceAnswer {
    nonce: u64,
}

#[derive(Deserialize)]
struct FeeAnswer {
    fee: u64,
}

/// Calls `method` and reads the fields of its answer that the client needs.
fn call_as<T: DeserializeOwned>(client: &RpcClient, method: &str, params: Value) -> Result<T> {
    let answer = client
        .call(method, params)
        .with_context(|| format!("{method} at {}", client.url()))?;
    serde_json::from_value(answer).with_context(|| format!("{method}: unexpected answer"))
}

/// Everything of `tx …` but printing: returns the node's answer.
pub fn send_tx(args: &TxArgs) -> Result<Value> {
    let key_path = args
        .key
        .as_deref()
        .context("--key is required: the file holding the sender's signing key")?;
    let key = load_signing_key(key_path)?;
    let kind = match &args.cmd {
        TxCommand::Transfer { to, amount } => TxKind::Transfer {
            to: *to,
            amount: *amount,
        },
        TxCommand::Stake { amount } => TxKind::Stake { amount: *amount },
        TxCommand::Unstake { amount } => TxKind::Unstake { amount: *amount },
        TxCommand::ClaimReceipt { receipt } => TxKind::ReceiptClaim {
            receipt: Box::new(read_receipt(receipt)?),
        },
    };
    let client = RpcClient::new(&args.rpc).context("--rpc")?;

    let chain_id = match &args.chain_id {
        Some(id) if id.is_empty() => bail!("--chain-id must not be empty"),
        Some(id) => id.clone(),
        None => call_as::<StatusAnswer>(&client, "status", json!({}))?.chain_id,
    };
    if let (TxCommand::ClaimReceipt { receipt: path }, TxKind::ReceiptClaim { receipt }) =
        (&args.cmd, &kind)
    {
        // The node would refuse it too; checked here so a receipt signed for another chain
        // fails with a message naming the file instead of a bare `bad_signature`.
        receipt.verify_signatures(&chain_id).with_context(|| {
            format!(
                "receipt file {}: signatures do not verify for chain {chain_id:?}",
                path.display()
            )
        })?;
    }
    let nonce = match args.nonce {
        Some(n) => n,
        None => {
            let sender = Address::of(&key.public());
            let account: BalanceAnswer =
                call_as(&client, "getBalance", json!({"address": sender}))?;
            account
                .nonce
                .checked_add(1)
                .context("the sender's nonce is exhausted")?
        }
    };
    let tx = build_tx(&chain_id, kind, &key, nonce, args.fee, |bytes| {
        Ok(call_as::<FeeAnswer>(&client, "estimateFee", json!({"bytes": bytes}))?.fee)
    })?;

    let method = match tx.kind {
        TxKind::ReceiptClaim { .. } => "submitReceipt",
        _ => "sendTx",
    };
    let timeout = match args.wait {
        WaitFor::Commit => COMMIT_TIMEOUT,
        WaitFor::None | WaitFor::Mempool => rpc::DEFAULT_TIMEOUT,
    };
    let sender = RpcClient::with_timeout(&args.rpc, timeout).context("--rpc")?;
    let params = json!({"tx": tx, "wait": args.wait.as_str()});
    // The hash in the error matters most after a timeout: the tx may still commit, and
    // `query tx <hash>` tells.
    sender
        .call(method, params)
        .with_context(|| format!("{method} of tx {} at {}", tx.hash(), sender.url()))
}

/// The JSON-RPC method and params of a query.
pub fn query_request(cmd: &QueryCommand) -> (&'static str, Value) {
    match cmd {
        QueryCommand::Head => ("getHead", json!({})),
        QueryCommand::Block {
            at: BlockAt::Height(h),
        } => ("getBlock", json!({"height": h})),
        QueryCommand::Block {
            at: BlockAt::Hash(h),
        } => ("getBlock", json!({"hash": h})),
        QueryCommand::Tx { hash } => ("getTx", json!({"hash": hash})),
        QueryCommand::Balance { address } => ("getBalance", json!({"address": address})),
        QueryCommand::Validators => ("getValidators", json!({})),
        QueryCommand::Status => ("status", json!({})),
        QueryCommand::Mempool { limit } => ("getMempool", json!({"limit": limit})),
        QueryCommand::Supply => ("getSupply", json!({})),
    }
}

/// Everything of `query …` but printing: returns the node's answer. A `null` answer for a
/// block or tx is an error, so a script sees "not found" in the exit status.
pub fn query(args: &QueryArgs) -> Result<Value> {
    let client = RpcClient::new(&args.rpc).context("--rpc")?;
    let (method, params) = query_request(&args.cmd);
    let answer = client
        .call(method, params.clone())
        .with_context(|| format!("{method} at {}", client.url()))?;
    if answer.is_null() {
        bail!("{method} {params}: not found");
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::test_server::{Reply, TestServer};
    use super::*;
    use aitbc_chain::receipt::ReceiptCore;
    use aitbc_chain::Params;
    use clap::{CommandFactory, Parser, Subcommand};
    use std::os::unix::fs::PermissionsExt;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Subcommand, Debug)]
    enum Top {
        Tx(TxArgs),
        Query(QueryArgs),
    }

    fn parse(args: &[&str]) -> Result<Top, clap::Error> {
        Cli::try_parse_from(std::iter::once("aitbc-node").chain(args.iter().copied()))
            .map(|c| c.cmd)
    }

    fn tx_args(args: &[&str]) -> TxArgs {
        match parse(args) {
            Ok(Top::Tx(t)) => t,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn fee_rule(params: &Params) -> impl FnMut(u64) -> Result<u64> + '_ {
        |bytes| Ok(params.min_fee(bytes))
    }

    fn key_file(dir: &Path, seed: [u8; 32]) -> PathBuf {
        let path = dir.join("wallet_key");
        keys::write_seed_file(&path, &seed).expect("write key");
        path
    }

    fn receipt(chain_id: &str) -> Receipt {
        let miner = SecretKey::from_seed([11; 32]);
        let coord = SecretKey::from_seed([12; 32]);
        let core = ReceiptCore {
            receipt_id: Hash::of(b"r1"),
            job_id: 7,
            client: Address([9; 20]),
            miner: Address::of(&miner.public()),
            coordinator: Address::of(&coord.public()),
            compute_units: 10,
            price: 100,
            output_hash: Hash::of(b"out"),
            client_payment_tx: Hash::of(b"pay"),
        };
        Receipt::sign(chain_id, core, &miner, &coord)
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn built_tx_verifies_and_pays_for_its_length() {
        let key = SecretKey::from_seed([1; 32]);
        let params = Params::default();
        let kinds = [
            TxKind::Transfer {
                to: Address([3; 20]),
                amount: 1_500_000,
            },
            TxKind::Stake { amount: u64::MAX },
            TxKind::Unstake { amount: 0 },
            TxKind::ReceiptClaim {
                receipt: Box::new(receipt("ait-test")),
            },
        ];
        for kind in kinds {
            let mut asked = Vec::new();
            let tx = build_tx("ait-test", kind.clone(), &key, 9, None, |bytes| {
                asked.push(bytes);
                fee_rule(&params)(bytes)
            })
            .expect("build");
            assert_eq!(tx.verify_signature(&tx.hash()), Ok(()));
            assert_eq!(tx.kind, kind);
            assert_eq!((tx.nonce, tx.chain_id.as_str()), (9, "ait-test"));
            assert_eq!(tx.sender_pubkey, key.public());
            let min = tx.min_fee(params.base_fee, params.fee_per_byte);
            assert_eq!(tx.fee, min, "exactly the minimum for its own length");
            assert_eq!(
                asked,
                vec![tx.encoded_len() as u64],
                "one estimate settles it"
            );
        }
        // An explicit fee is used as given, without asking.
        let tx = build_tx("c", TxKind::Stake { amount: 1 }, &key, 1, Some(5), |_| {
            panic!("must not ask")
        })
        .expect("build");
        assert_eq!(tx.fee, 5);
        assert_eq!(tx.verify_signature(&tx.hash()), Ok(()));
    }

    #[test]
    fn key_file_goes_through_the_node_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = key_file(dir.path(), [4; 32]);
        let key = load_signing_key(&path).expect("load");
        assert_eq!(key.public(), SecretKey::from_seed([4; 32]).public());
        // The node's rules apply: loose permissions are refused, and the flag is named.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = format!("{:#}", load_signing_key(&path).expect_err("0644"));
        assert!(err.starts_with("--key"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        let err = format!(
            "{:#}",
            load_signing_key(&dir.path().join("none")).expect_err("missing")
        );
        assert!(err.starts_with("--key") && err.contains("none"), "{err}");
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let good = Address([3; 20]).to_string();
        let cases: [(&[&str], &str); 10] = [
            (&["tx", "transfer", "ait1bogus", "5"], "<TO>"),
            (&["tx", "transfer", &good, "1.5"], "<AMOUNT>"),
            (&["tx", "transfer", &good, "-1"], "<AMOUNT>"),
            (&["tx", "stake", "0.0000001ait"], "<AMOUNT>"),
            (&["tx", "unstake", "99999999999999999999"], "<AMOUNT>"),
            (&["tx", "stake", "5", "--fee", "x"], "--fee"),
            (&["tx", "stake", "5", "--nonce", "0"], "--nonce"),
            (&["tx", "stake", "5", "--wait", "later"], "--wait"),
            (&["query", "block", "12x"], "<AT>"),
            (&["query", "balance", "0x00"], "<ADDRESS>"),
        ];
        for (args, name) in cases {
            let err = parse(args).expect_err("must be refused").to_string();
            assert!(err.contains(name), "{args:?}: {err}");
        }
        let err = parse(&["tx", "stake", "-1"])
            .expect_err("negative")
            .to_string();
        assert!(err.contains("negative"), "{err}");
        let err = parse(&["query", "tx", "0x12"])
            .expect_err("short hash")
            .to_string();
        assert!(err.contains("<HASH>"), "{err}");
    }

    #[test]
    fn flags_parse_before_or_after_the_subcommand() {
        let to = Address([3; 20]);
        let a = tx_args(&[
            "tx",
            "--key",
            "k",
            "--fee",
            "0.01ait",
            "transfer",
            &to.to_string(),
            "2ait",
            "--nonce",
            "4",
            "--wait",
            "mempool",
            "--chain-id",
            "c",
            "--rpc",
            "http://h:1",
        ]);
        assert!(matches!(a.cmd, TxCommand::Transfer { to: t, amount: 2_000_000 } if t == to));
        assert_eq!(a.key.as_deref(), Some(Path::new("k")));
        assert_eq!(
            (
                a.fee,
                a.nonce,
                a.wait,
                a.chain_id.as_deref(),
                a.rpc.as_str()
            ),
            (
                Some(10_000),
                Some(4),
                WaitFor::Mempool,
                Some("c"),
                "http://h:1"
            )
        );
        let d = tx_args(&["tx", "stake", "1000ait"]);
        assert_eq!(
            (d.fee, d.nonce, d.wait, d.chain_id, d.rpc.as_str()),
            (None, None, WaitFor::Commit, None, DEFAULT_RPC)
        );
        let Ok(Top::Query(q)) = parse(&["query", "mempool"]) else {
            panic!("query mempool")
        };
        assert_eq!(query_request(&q.cmd), ("getMempool", json!({"limit": 100})));
    }

    #[test]
    fn queries_map_to_methods() {
        let h = Hash::of(b"x");
        let a = Address([5; 20]);
        let cases = [
            (QueryCommand::Head, "getHead", json!({})),
            (
                QueryCommand::Block {
                    at: BlockAt::Height(3),
                },
                "getBlock",
                json!({"height": 3}),
            ),
            (
                QueryCommand::Block {
                    at: format!("{h}").parse().expect("hash"),
                },
                "getBlock",
                json!({"hash": h.to_string()}),
            ),
            (
                QueryCommand::Tx { hash: h },
                "getTx",
                json!({"hash": h.to_string()}),
            ),
            (
                QueryCommand::Balance { address: a },
                "getBalance",
                json!({"address": a.to_string()}),
            ),
            (QueryCommand::Validators, "getValidators", json!({})),
            (QueryCommand::Status, "status", json!({})),
            (
                QueryCommand::Mempool { limit: 5 },
                "getMempool",
                json!({"limit": 5}),
            ),
            (QueryCommand::Supply, "getSupply", json!({})),
        ];
        for (cmd, method, params) in cases {
            assert_eq!(query_request(&cmd), (method, params), "{cmd:?}");
        }
    }

    #[test]
    fn query_prints_answer_and_fails_on_not_found() {
        let server = TestServer::start(vec![
            Reply::result(json!({"supply": 10, "height": 2})),
            Reply::result(Value::Null),
        ]);
        let supply = QueryArgs {
            cmd: QueryCommand::Supply,
            rpc: server.url(),
        };
        assert_eq!(
            query(&supply).expect("supply"),
            json!({"supply": 10, "height": 2})
        );
        let tx = QueryArgs {
            cmd: QueryCommand::Tx { hash: Hash::ZERO },
            rpc: server.url(),
        };
        let err = format!("{:#}", query(&tx).expect_err("null"));
        assert!(err.contains("not found"), "{err}");
        server.finish();
    }

    #[test]
    fn transfer_asks_chain_nonce_and_fee_then_sends_signed_tx() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = [6; 32];
        let key_path = key_file(dir.path(), seed);
        let key = SecretKey::from_seed(seed);
        let to = Address([8; 20]);
        let params = Params::default();
        // The length the client will measure: fee 0 encodes as long as any other fee.
        let kind = TxKind::Transfer {
            to,
            amount: 1_500_000,
        };
        let len = Tx::signed("ait-test", kind.clone(), &key, 5, 0).encoded_len() as u64;
        let fee = params.min_fee(len);
        let server = TestServer::start(vec![
            Reply::result(json!({"chain_id": "ait-test", "head_height": 3})),
            Reply::result(json!({"balance": 10_000_000, "nonce": 4, "stake": 0, "height": 3})),
            Reply::result(json!({"fee": fee, "bytes": len, "base_fee": 1000, "fee_per_byte": 10})),
            Reply::result(json!({"hash": "0x00", "status": "committed", "height": 4})),
        ]);
        let args = tx_args(&[
            "tx",
            "transfer",
            &to.to_string(),
            "1.5ait",
            "--key",
            key_path.to_str().expect("utf8"),
            "--rpc",
            &server.url(),
        ]);
        let answer = send_tx(&args).expect("send");
        assert_eq!(answer["status"], "committed");
        let reqs = server.finish();
        let methods: Vec<&str> = reqs.iter().filter_map(|r| r["method"].as_str()).collect();
        assert_eq!(methods, ["status", "getBalance", "estimateFee", "sendTx"]);
        assert_eq!(
            reqs[1]["params"],
            json!({"address": Address::of(&key.public()).to_string()})
        );
        assert_eq!(reqs[2]["params"], json!({"bytes": len}));
        assert_eq!(reqs[3]["params"]["wait"], "commit");
        let tx: Tx = serde_json::from_value(reqs[3]["params"]["tx"].clone()).expect("a Tx");
        assert_eq!(tx.verify_signature(&tx.hash()), Ok(()));
        assert_eq!(
            (tx.chain_id.as_str(), tx.nonce, tx.fee),
            ("ait-test", 5, fee)
        );
        assert_eq!(tx.kind, kind);
        assert!(tx.fee >= tx.min_fee(params.base_fee, params.fee_per_byte));
    }

    #[test]
    fn pinned_flags_skip_the_questions_and_rejection_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = key_file(dir.path(), [2; 32]);
        let server = TestServer::start(vec![Reply::error(
            200,
            -32000,
            "fee below the floor",
            Some(json!({"reason": "fee_too_low"})),
        )]);
        let args = tx_args(&[
            "tx",
            "unstake",
            "3",
            "--key",
            key_path.to_str().expect("utf8"),
            "--rpc",
            &server.url(),
            "--fee",
            "7",
            "--nonce",
            "2",
            "--chain-id",
            "c",
            "--wait",
            "none",
        ]);
        let err = send_tx(&args).expect_err("rejected");
        let reqs = server.finish();
        assert_eq!(reqs.len(), 1, "only sendTx: {reqs:?}");
        assert_eq!(reqs[0]["method"], "sendTx");
        assert_eq!(reqs[0]["params"]["wait"], "none");
        let tx: Tx = serde_json::from_value(reqs[0]["params"]["tx"].clone()).expect("a Tx");
        assert_eq!((tx.chain_id.as_str(), tx.nonce, tx.fee), ("c", 2, 7));
        assert_eq!(tx.kind, TxKind::Unstake { amount: 3 });
        match err.downcast_ref::<RpcError>() {
            Some(RpcError::Rpc { code, reason, .. }) => {
                assert_eq!((*code, reason.as_deref()), (-32000, Some("fee_too_low")));
            }
            other => panic!("expected a JSON-RPC error, got {other:?}: {err:#}"),
        }
        let shown = format!("{err:#}");
        assert!(
            shown.contains("fee_too_low") && shown.contains("sendTx"),
            "{shown}"
        );
    }

    #[test]
    fn claim_receipt_reads_checks_and_submits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = key_file(dir.path(), [2; 32]);
        let key_arg = key_path.to_str().expect("utf8").to_string();
        let good = dir.path().join("receipt.json");
        std::fs::write(&good, serde_json::to_vec(&receipt("c")).expect("json")).expect("write");

        let server = TestServer::start(vec![Reply::result(
            json!({"hash": "0x00", "status": "pending", "height": null}),
        )]);
        let rpc = server.url();
        let pinned = [
            "--key", &key_arg, "--rpc", &rpc, "--fee", "1", "--nonce", "1",
        ];
        let mut argv = vec!["tx", "claim-receipt", good.to_str().expect("utf8")];
        argv.extend(pinned);
        argv.extend(["--chain-id", "c"]);
        send_tx(&tx_args(&argv)).expect("claim");
        let reqs = server.finish();
        assert_eq!(reqs[0]["method"], "submitReceipt");
        let tx: Tx = serde_json::from_value(reqs[0]["params"]["tx"].clone()).expect("a Tx");
        assert_eq!(
            tx.kind,
            TxKind::ReceiptClaim {
                receipt: Box::new(receipt("c"))
            }
        );

        // Signed for another chain: refused before anything is sent (no server listens).
        let mut argv = vec!["tx", "claim-receipt", good.to_str().expect("utf8")];
        argv.extend(pinned);
        argv.extend(["--chain-id", "other"]);
        let err = format!("{:#}", send_tx(&tx_args(&argv)).expect_err("wrong chain"));
        assert!(
            err.contains("do not verify") && err.contains("receipt.json"),
            "{err}"
        );

        // Not a receipt, or too large: the file is named.
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, b"{\"core\": 1}").expect("write");
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; (MAX_RECEIPT_FILE + 1) as usize]).expect("write");
        for (path, what) in [(&junk, "not a signed receipt"), (&big, "larger than")] {
            let err = format!("{:#}", read_receipt(path).expect_err(what));
            assert!(
                err.contains(what) && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_key_is_named() {
        let args = tx_args(&["tx", "stake", "1"]);
        let err = format!("{:#}", send_tx(&args).expect_err("no key"));
        assert!(err.contains("--key is required"), "{err}");
    }
}
