//! `aitbc-devnet`: a local network of real `aitbc-node` validator processes on 127.0.0.1, for
//! development and end-to-end tests (SPEC §1, issue #6).
//!
//! Everything lives in one folder (default `./devnet`):
//!
//! ```text
//! devnet/
//!   devnet.json          what `up` made and started: chain, ports, peer ids, pids
//!   genesis.json         the one genesis every node runs (also copied into each home)
//!   accounts/            funded devnet accounts: accountN key files (0600), accounts.json
//!   node0/ … nodeN-1/    `aitbc-node init` homes (keys, config.toml, genesis.json, data/)
//!     node.log           the node's stderr (its tracing output)
//!   light0/ … lightK-1/  light peers' homes (`up --light K`), the same kind, run with `--light`
//!   sync-bench-…/        while `bench-sync` runs: its follower node's temporary home
//! ```
//!
//! The nodes are separate processes in their own process groups, so they outlive `up` and a
//! Ctrl-C in its terminal; `devnet.json` records their pids so `status`, `down` and `reset`
//! (later invocations) find them again. A recorded pid is trusted only while the process with
//! that pid is still an `aitbc-node run --home <that node's home>`: pids are reused, and a stale
//! record must never make `down` signal an unrelated process.
//!
//! The binary (`main.rs`) is a thin clap front end over this library, which the end-to-end
//! tests and the later `demo`/`bench` commands reuse.

pub mod accounts;
pub mod bench;
pub mod bench_sync;
pub mod demo;
pub mod down;
pub mod logs;
pub mod mocks;
pub mod node_ctl;
pub mod process;
pub mod record;
pub mod status;
pub mod table;
pub mod up;

/// The chain id `up` gives a new devnet unless `--chain-id` says otherwise.
pub const DEFAULT_CHAIN_ID: &str = "aitbc-devnet";
/// Validators `up` starts unless `-n` says otherwise.
pub const DEFAULT_NODES: u16 = 4;
/// Block time of a new devnet: SPEC §8's default of one second.
pub const DEFAULT_BLOCK_TIME_MS: u64 = 1_000;
