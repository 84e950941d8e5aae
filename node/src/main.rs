//! The `aitbc-node` command line: set up a node home, run the node, edit a genesis file, check
//! a config, and the client commands (`tx`, `query`) that sign locally and talk JSON-RPC.

use aitbc_chain::{Address, PublicKey};
use aitbc_node::config::{process_env, split_peers, Layer, NodeConfig};
use aitbc_node::{home, keys};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "aitbc-node", version, about = "AITBC validator node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node home: keys (mode 0600), config.toml, data/ and a one-validator dev genesis.
    Init {
        /// Directory to create; must not exist or be empty.
        #[arg(long)]
        home: PathBuf,
        #[arg(long, default_value = aitbc_node::config::DEFAULT_CHAIN_ID)]
        chain_id: String,
    },
    /// Run the node: the home's config.toml (or --config), then environment, then flags.
    Run {
        /// Node home made by `init`; its config.toml is the config file.
        #[arg(long)]
        home: Option<PathBuf>,
        /// TOML config file (instead of <home>/config.toml).
        #[arg(long, conflicts_with = "home")]
        config: Option<PathBuf>,
        /// Run as a light peer: follow and verify headers from genesis, answer verified
        /// balances; no validator key, no blocks, no state (its data lives in <db_path>/light).
        #[arg(long)]
        light: bool,
        #[command(flatten)]
        flags: Box<ConfigFlags>,
    },
    /// Sign and send a transaction over JSON-RPC.
    Tx(aitbc_node::client::TxArgs),
    /// Ask a node over JSON-RPC.
    Query(aitbc_node::client::QueryArgs),
    /// Validator key commands.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Edit a genesis file; the result is validated before it replaces the file.
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the validator address and public key (never the secret).
    Show {
        /// Node home; its config.toml (with environment overrides) locates the key.
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Subcommand)]
enum GenesisCommand {
    /// Write a new genesis file (refuses to replace one): default params, the given
    /// validators, the first of them the only authority.
    New {
        /// File to create.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        chain_id: String,
        /// Validator public key, 0x-prefixed hex (from `keys show`); repeat for each.
        #[arg(long = "validator", required = true)]
        validators: Vec<String>,
        /// Stake of each validator in base units [default: params.min_stake].
        #[arg(long)]
        stake: Option<u64>,
        /// Milliseconds since the Unix epoch [default: now].
        #[arg(long)]
        genesis_time: Option<u64>,
    },
    /// Add a genesis validator.
    AddValidator {
        #[arg(long)]
        genesis: PathBuf,
        /// Validator public key, 0x-prefixed hex (from `keys show`).
        #[arg(long)]
        pubkey: String,
        /// Bonded stake in base units; at least params.min_stake.
        #[arg(long)]
        stake: u64,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Add a funded genesis account.
    AddAccount {
        #[arg(long)]
        genesis: PathBuf,
        /// Bech32 address, ait1…
        #[arg(long)]
        address: String,
        /// Balance in base units.
        #[arg(long)]
        balance: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load defaults < config file < environment < flags, check every value and print the
    /// effective config (admin token redacted).
    Show {
        /// TOML config file; without it only defaults, environment and flags apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Boxed: nineteen optional strings would make every `Command` value large.
        #[command(flatten)]
        flags: Box<ConfigFlags>,
    },
}

/// One flag per config key. Values stay text here so that the config loader checks them and
/// its errors name the flag, as for the file and environment layers.
#[derive(Args)]
struct ConfigFlags {
    #[arg(long)]
    chain_id: Option<String>,
    #[arg(long)]
    db_path: Option<String>,
    #[arg(long)]
    p2p_bind: Option<String>,
    #[arg(long)]
    rpc_bind: Option<String>,
    /// Comma-separated multiaddrs, each ending in /p2p/<peer id>.
    #[arg(long)]
    bootstrap_peers: Option<String>,
    #[arg(long)]
    validator_key: Option<String>,
    #[arg(long)]
    node_key: Option<String>,
    #[arg(long)]
    genesis: Option<String>,
    /// Milliseconds; overrides the genesis block time.
    #[arg(long)]
    block_time: Option<String>,
    #[arg(long)]
    metrics_port: Option<String>,
    #[arg(long)]
    log_level: Option<String>,
    /// human or json
    #[arg(long)]
    log_format: Option<String>,
    #[arg(long)]
    admin_token: Option<String>,
    /// Largest RPC request body or WebSocket message, in bytes (65536 to 67108864).
    #[arg(long)]
    rpc_max_body_bytes: Option<String>,
    /// RPC connections served at once (1 to 65536).
    #[arg(long)]
    rpc_max_connections: Option<String>,
    /// RPC requests per second per client IP; 0 = no limit. Bursts may reach twice this.
    #[arg(long)]
    rpc_rate_per_ip: Option<String>,
    /// Comma-separated CORS origins (http:// or https://, no path), or * for any; empty = none.
    #[arg(long)]
    rpc_cors_origins: Option<String>,
    /// Most txs the mempool holds (1000 to 1000000).
    #[arg(long)]
    mempool_max_txs: Option<String>,
    /// Most bytes of txs the mempool holds (1048576 to 1073741824).
    #[arg(long)]
    mempool_max_bytes: Option<String>,
}

impl ConfigFlags {
    fn layer(self) -> Layer {
        Layer {
            chain_id: self.chain_id,
            db_path: self.db_path,
            p2p_bind: self.p2p_bind,
            rpc_bind: self.rpc_bind,
            bootstrap_peers: self.bootstrap_peers.as_deref().map(split_peers),
            validator_key: self.validator_key,
            node_key: self.node_key,
            genesis: self.genesis,
            block_time: self.block_time,
            metrics_port: self.metrics_port,
            log_level: self.log_level,
            log_format: self.log_format,
            admin_token: self.admin_token,
            rpc_max_body_bytes: self.rpc_max_body_bytes,
            rpc_max_connections: self.rpc_max_connections,
            rpc_rate_per_ip: self.rpc_rate_per_ip,
            rpc_cors_origins: self.rpc_cors_origins.as_deref().map(split_peers),
            mempool_max_txs: self.mempool_max_txs,
            mempool_max_bytes: self.mempool_max_bytes,
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Init { home, chain_id } => {
            let s =
                home::init(&home, &chain_id).with_context(|| format!("init {}", home.display()))?;
            println!("created node home {}", home.display());
            println!("chain id:          {chain_id}");
            println!("validator address: {}", s.address);
            println!("validator pubkey:  {}", s.pubkey);
            println!("genesis hash:      {}", s.genesis_hash);
        }
        Command::Run {
            home,
            config,
            light,
            flags,
        } => {
            let file = config.or_else(|| home.map(|h| h.join(home::CONFIG_FILE)));
            let cfg = NodeConfig::load(
                file.as_deref(),
                &Layer::from_env(process_env),
                &flags.layer(),
            )?;
            aitbc_node::logging::init(cfg.log_level, cfg.log_format)?;
            aitbc_node::malloc::tune();
            if light {
                aitbc_node::light::run(cfg)?;
            } else {
                aitbc_node::run::run(cfg)?;
            }
        }
        Command::Tx(args) => aitbc_node::client::run_tx(args)?,
        Command::Query(args) => aitbc_node::client::run_query(args)?,
        Command::Keys(KeysCommand::Show { home }) => keys_show(&home)?,
        Command::Genesis(GenesisCommand::New {
            out,
            chain_id,
            validators,
            stake,
            genesis_time,
        }) => {
            let pks = validators
                .iter()
                .map(|v| {
                    v.parse::<PublicKey>()
                        .with_context(|| format!("--validator {v:?} is not a 0x-hex public key"))
                })
                .collect::<Result<Vec<_>>>()?;
            let time = match genesis_time {
                Some(t) => t,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("the system clock is before 1970")?
                    .as_millis()
                    .try_into()
                    .context("the system clock is out of range")?,
            };
            let g = home::new_genesis(&out, &chain_id, time, &pks, stake)?;
            println!(
                "wrote {} ({} validators); genesis hash {}",
                out.display(),
                g.validators.len(),
                g.hash()
            );
        }
        Command::Genesis(GenesisCommand::AddValidator {
            genesis,
            pubkey,
            stake,
            name,
        }) => {
            let pk: PublicKey = pubkey
                .parse()
                .with_context(|| format!("--pubkey {pubkey:?} is not a 0x-hex public key"))?;
            let g = home::add_validator(&genesis, pk, stake, name)?;
            println!(
                "added validator {} ({} validators); genesis hash {}",
                Address::of(&pk),
                g.validators.len(),
                g.hash()
            );
        }
        Command::Genesis(GenesisCommand::AddAccount {
            genesis,
            address,
            balance,
        }) => {
            let addr: Address = address
                .parse()
                .with_context(|| format!("--address {address:?} is not an ait1… address"))?;
            let g = home::add_account(&genesis, addr, balance)?;
            println!(
                "added account {addr} ({} accounts); genesis hash {}",
                g.accounts.len(),
                g.hash()
            );
        }
        Command::Config(ConfigCommand::Show { config, flags }) => {
            let cfg = NodeConfig::load(
                config.as_deref(),
                &Layer::from_env(process_env),
                &flags.layer(),
            )?;
            print!("{}", cfg.to_toml_redacted());
        }
    }
    Ok(())
}

fn keys_show(home: &Path) -> Result<()> {
    let cfg = NodeConfig::load(
        Some(&home.join(home::CONFIG_FILE)),
        &Layer::from_env(process_env),
        &Layer::default(),
    )?;
    let key = keys::load_validator_key(&cfg.validator_key)?;
    let pk = key.public();
    println!("validator address: {}", Address::of(&pk));
    println!("validator pubkey:  {pk}");
    Ok(())
}
