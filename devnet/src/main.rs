//! The `aitbc-devnet` command line: a thin clap front end over the `aitbc_devnet` library.

use aitbc_devnet::{down, logs, status, up};
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
    /// Print a node's log (its stderr).
    Logs {
        /// Node number: 0 or node0.
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
        Command::Logs { node, dir, follow } => logs::run(&dir, &node, follow, &mut stdout.lock())?,
    }
    std::io::stdout().flush()?;
    Ok(())
}
