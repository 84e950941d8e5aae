//! The `aitbc-devnet` command line: a thin clap front end over the `aitbc_devnet` library.

use aitbc_devnet::{down, logs, node_ctl, status, up};
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "aitbc-devnet",
    version,
    about = "Local AITBC devnet: N aitbc-node validators on 127.0.0.1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a devnet (node homes, one genesis, funded accounts, free ports) and start it, or
    /// restart the stopped devnet in --dir on its recorded ports; wait until every node commits.
    Up {
        /// Validators [default: 4 for a new devnet; a restart keeps its count].
        #[arg(short = 'n', long = "nodes", value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: Option<u16>,
        /// Light peers (`aitbc-node run --light`) to start beside the validators, named
        /// light0.. [default: 0 for a new devnet; a restart keeps its count].
        #[arg(long, value_parser = clap::value_parser!(u16).range(0..=16))]
        light: Option<u16>,
        /// The devnet folder.
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Milliseconds between a commit and the next height; 0 = as soon as possible
        /// [default: 1000 for a new devnet; a restart keeps its value].
        #[arg(long)]
        block_time: Option<u64>,
        /// Funded devnet accounts in genesis, 1,000,000 AIT each [default: 1000].
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        accounts: Option<u32>,
        /// Chain id of a new devnet [default: aitbc-devnet].
        #[arg(long)]
        chain_id: Option<String>,
        /// The aitbc-node binary [default: next to this executable, else on PATH].
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Seconds allowed for all nodes to start and commit 2 blocks.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Show each node: running or not, height, peers, mempool size, age of its last block.
    Status {
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Refresh every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Stop every node (SIGTERM, then SIGKILL after 10 s).
    Down {
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Then delete the devnet folder (only if it holds devnet.json).
        #[arg(long)]
        clean: bool,
    },
    /// Stop every node and delete its chain data (store and WAL), keeping keys and genesis, so
    /// the next `up` starts a fresh chain.
    Reset {
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
    },
    /// Run the compute-receipt flow of SPEC §4 on the running devnet: a client pays jobs to the
    /// coordinator, the miner computes and claims the receipts, plus one transfer; prints
    /// balances and supply before and after, explains the supply change, and shows a replayed
    /// claim refused. Fails if any observed change differs from the expectation.
    Demo {
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Jobs to pay for, compute and claim.
        #[arg(long, default_value_t = aitbc_devnet::demo::DEFAULT_JOBS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(aitbc_devnet::demo::MAX_JOBS)))]
        jobs: u32,
        /// Node whose JSON-RPC the demo uses: 0 for node0.
        #[arg(long, default_value_t = 0)]
        rpc_node: usize,
        /// Devnet account that plays the client [default: the last funded account].
        #[arg(long)]
        client: Option<u32>,
    },
    /// Load the running devnet with pre-signed transfers for --duration seconds and print the
    /// SPEC §9 figures (committed tx/s, submit→commit latency, block interval, view changes,
    /// CPU and memory per validator) as a table, and as JSON with --json.
    Bench {
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Seconds of the measured window.
        #[arg(long, default_value_t = aitbc_devnet::bench::DEFAULT_DURATION_S,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        duration: u64,
        /// Target transfers per second; 0 = as fast as the chain takes them.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        rate: u64,
        /// Sending accounts, account0 onwards [default: every funded account].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        accounts: Option<u32>,
        /// HTTP connections (sender threads), spread over the validators [default: 2 per validator].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        connections: Option<u16>,
        /// Transactions per JSON-RPC batch (the node's default limit is 100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
        batch: u16,
        /// Also write the figures as JSON to PATH; `-` prints the JSON on stdout and the table on
        /// stderr.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
    /// Measure block sync (SPEC §9: 10,000 blocks from peers at ≥ 2,000 blocks/s) on the
    /// running devnet: start a fresh follower node (a new home with the devnet genesis,
    /// bootstrapping from node0), time it from its first synced block to node0's head, and
    /// print blocks/s, its CPU and memory as a table, and as JSON with --json. The follower and
    /// its home are removed afterwards.
    BenchSync {
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Blocks to sync at least: node0's chain must be this long (the follower syncs all of
        /// it, up to node0's head when the run starts).
        #[arg(long, default_value_t = aitbc_devnet::bench_sync::DEFAULT_BLOCKS,
              value_parser = clap::value_parser!(u64).range(1..=aitbc_devnet::bench_sync::MAX_BLOCKS))]
        blocks: u64,
        /// Seconds allowed for the follower to start and reach node0's head.
        #[arg(long, default_value_t = aitbc_devnet::bench_sync::DEFAULT_TIMEOUT_S,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// The aitbc-node binary [default: next to this executable, else on PATH].
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Also write the figures as JSON to PATH; `-` prints the JSON on stdout and the table on
        /// stderr.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
    /// Stop one node (SIGTERM, then SIGKILL after 10 s); the others keep running.
    Stop {
        /// Node: 0 or node0 for a validator, light0 for a light peer.
        #[arg(value_name = "NODE")]
        node: String,
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// SIGKILL at once, without SIGTERM: the node crashes instead of shutting down.
        #[arg(long)]
        kill: bool,
    },
    /// Start one stopped node on its recorded ports, as `up` restarts it, bootstrapping from
    /// the other nodes; wait until it answers with its height.
    Start {
        /// Node: 0 or node0 for a validator, light0 for a light peer.
        #[arg(value_name = "NODE")]
        node: String,
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// The aitbc-node binary [default: next to this executable, else on PATH].
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Seconds allowed for the node to start and answer.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Print a node's log (its stderr).
    Logs {
        /// Node: 0 or node0 for a validator, light0 for a light peer.
        #[arg(value_name = "NODE")]
        node: String,
        #[arg(long, default_value = "./devnet")]
        dir: PathBuf,
        /// Keep printing what is appended, until Ctrl-C.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

/// Errors are printed as `error: <message>: <cause>…` (the whole chain on one line, no
/// backtrace), then the process exits with status 1.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let stdout = std::io::stdout();
    match cli.command {
        Command::Up {
            nodes,
            light,
            dir,
            block_time,
            accounts,
            chain_id,
            node_bin,
            timeout,
        } => {
            let opts = up::UpOptions {
                dir,
                nodes,
                light,
                block_time_ms: block_time,
                accounts,
                chain_id,
                node_bin,
                timeout: Duration::from_secs(timeout),
            };
            // Ctrl-C while starting stops the nodes started so far instead of orphaning them.
            aitbc_devnet::process::catch_interrupts();
            let done = up::up(&opts, &mut std::io::stderr())?;
            if done.restarted {
                eprintln!("restarted the stopped devnet in {}", done.dir.display());
            }
            print!("{}", up::table(&done));
        }
        Command::Status { dir, watch } => status::run(&dir, watch, &mut stdout.lock())?,
        Command::Down { dir, clean } => println!("{}", down::down(&dir, clean)?),
        Command::Reset { dir } => println!("{}", down::reset(&dir)?),
        Command::Demo {
            dir,
            jobs,
            rpc_node,
            client,
        } => {
            let opts = aitbc_devnet::demo::DemoOptions {
                dir,
                jobs,
                rpc_node,
                client,
            };
            aitbc_devnet::demo::run(&opts, &mut stdout.lock())?;
        }
        Command::Bench {
            dir,
            duration,
            rate,
            accounts,
            connections,
            batch,
            json,
        } => {
            let opts = aitbc_devnet::bench::BenchOptions {
                dir,
                duration: Duration::from_secs(duration),
                rate,
                accounts,
                connections: connections.map(usize::from),
                batch: usize::from(batch),
                json,
            };
            aitbc_devnet::bench::main(&opts, &mut stdout.lock())?;
        }
        Command::BenchSync {
            dir,
            blocks,
            timeout,
            node_bin,
            json,
        } => {
            let opts = aitbc_devnet::bench_sync::SyncOptions {
                dir,
                blocks,
                timeout: Duration::from_secs(timeout),
                node_bin,
                json,
            };
            aitbc_devnet::bench_sync::main(&opts, &mut stdout.lock())?;
        }
        Command::Stop { node, dir, kill } => println!("{}", node_ctl::stop(&dir, &node, kill)?),
        Command::Start {
            node,
            dir,
            node_bin,
            timeout,
        } => {
            let opts = node_ctl::StartOptions {
                dir,
                node,
                node_bin,
                timeout: Duration::from_secs(timeout),
            };
            // Ctrl-C while starting stops the node instead of orphaning it.
            aitbc_devnet::process::catch_interrupts();
            let started = node_ctl::start(&opts, &mut std::io::stderr())?;
            print!("{}", node_ctl::table(&started));
        }
        Command::Logs { node, dir, follow } => logs::run(&dir, &node, follow, &mut stdout.lock())?,
    }
    std::io::stdout().flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_sync_flags_default_and_range() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["aitbc-devnet", "bench-sync", "--dir", "/tmp/net"]
                    .iter()
                    .chain(args),
            )
        };
        match parse(&[]).expect("defaults").command {
            Command::BenchSync {
                blocks,
                timeout,
                json,
                ..
            } => {
                assert_eq!(blocks, 10_000);
                assert_eq!(timeout, 600);
                assert_eq!(json, None);
            }
            _ => panic!("not bench-sync"),
        }
        assert!(parse(&["--blocks", "1000000", "--json", "-"]).is_ok());
        for bad in [
            ["--blocks", "0"],
            ["--blocks", "1000001"],
            ["--timeout", "0"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
