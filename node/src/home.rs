//! The node home made by `aitbc-node init`, and genesis-file editing.
//!
//! A home holds `node_key`, `validator_key`, `genesis.json`, `config.toml` and `data/`. The
//! config uses paths relative to itself, so the home can be moved or mounted elsewhere.

use crate::keys::{self, KeyError};
use aitbc_chain::genesis::{Genesis, GenesisAccount, GenesisError, GenesisValidator};
use aitbc_chain::{Address, PublicKey, SecretKey};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const GENESIS_FILE: &str = "genesis.json";
pub const VALIDATOR_KEY_FILE: &str = "validator_key";
pub const NODE_KEY_FILE: &str = "node_key";
pub const DATA_DIR: &str = "data";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{0} already exists and is not empty; init never overwrites a node home (choose another --home or remove it)")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {source}")]
    Genesis {
        path: PathBuf,
        #[source]
        source: GenesisError,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The dev genesis balance of the validator's account: 1,000,000 AIT.
pub const DEV_BALANCE: u64 = 1_000_000 * aitbc_chain::params::AIT;

/// What `init` made, for printing.
#[derive(Debug)]
pub struct InitSummary {
    pub address: Address,
    pub pubkey: PublicKey,
    pub genesis_hash: aitbc_chain::Hash,
}

/// Creates a node home with fresh keys and a single-validator dev genesis. An existing empty
/// directory is accepted (a freshly mounted volume); anything else existing is refused.
pub fn init(home: &Path, chain_id: &str) -> Result<InitSummary, HomeError> {
    // Check the chain id before creating anything, so a typo leaves no half-made home.
    let probe = Genesis::dev(chain_id, &[&SecretKey::from_seed([1; 32])], &[]);
    probe.validate().map_err(|source| HomeError::Genesis {
        path: home.join(GENESIS_FILE),
        source,
    })?;
    match fs::read_dir(home) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(HomeError::Exists(home.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // 0700: the home holds the keys; nobody else needs to list it.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(home)
                .map_err(io_at(home))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(HomeError::Exists(home.to_path_buf()));
        }
        Err(e) => return Err(io_at(home)(e)),
    }
    let data = home.join(DATA_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .map_err(io_at(&data))?;
    keys::create_node_key(&home.join(NODE_KEY_FILE))?;
    let key = keys::create_validator_key(&home.join(VALIDATOR_KEY_FILE))?;
    // The validator's account is funded and named faucet, so a fresh single-node chain can
    // move funds (`aitbc-node tx transfer --key <home>/validator_key`) and serve
    // `/admin/mintFaucet` without editing genesis first.
    let address = Address::of(&key.public());
    let mut genesis = Genesis::dev(chain_id, &[&key], &[(address, DEV_BALANCE)]);
    genesis.faucet = Some(address);
    let gpath = home.join(GENESIS_FILE);
    write_new(&gpath, genesis.to_json().as_bytes())?;
    let config = format!(
        "# Written by `aitbc-node init`. Relative paths are relative to this file.\n\
         # Every key is listed in config/node.example.toml.\n\
         chain_id = \"{chain_id}\"\n\
         db_path = \"{DATA_DIR}\"\n\
         validator_key = \"{VALIDATOR_KEY_FILE}\"\n\
         node_key = \"{NODE_KEY_FILE}\"\n\
         genesis = \"{GENESIS_FILE}\"\n"
    );
    write_new(&home.join(CONFIG_FILE), config.as_bytes())?;
    Ok(InitSummary {
        address: Address::of(&key.public()),
        pubkey: key.public(),
        genesis_hash: genesis.hash(),
    })
}

/// Writes a new file (never replacing one) and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

/// Reads and validates a genesis file, refusing oversized files before reading them whole.
pub fn read_genesis(path: &Path) -> Result<Genesis, HomeError> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| {
            f.take(aitbc_chain::genesis::MAX_GENESIS_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(io_at(path))?;
    Genesis::from_json(&bytes).map_err(|source| HomeError::Genesis {
        path: path.to_path_buf(),
        source,
    })
}

/// Applies `edit` to the genesis at `path`, checks the result parses and validates exactly as
/// a node would load it, then replaces the file atomically (temp file + rename), so a crash or
/// a rejected edit never leaves a half-written or invalid genesis.
pub fn edit_genesis(path: &Path, edit: impl FnOnce(&mut Genesis)) -> Result<Genesis, HomeError> {
    let mut genesis = read_genesis(path)?;
    edit(&mut genesis);
    let json = genesis.to_json();
    let checked = Genesis::from_json(json.as_bytes()).map_err(|source| HomeError::Genesis {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let perms = fs::metadata(path).map_err(io_at(path))?.permissions();
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    tmp.write_all(json.as_bytes()).map_err(io_at(path))?;
    // Keep the file's mode: the temp file starts at 0600.
    fs::set_permissions(tmp.path(), perms).map_err(io_at(path))?;
    tmp.as_file().sync_all().map_err(io_at(path))?;
    tmp.persist(path).map_err(|e| io_at(path)(e.error))?;
    Ok(checked)
}

/// Writes a new genesis at `path` (never replacing a file): default parameters, `validators`
/// each staking `stake`, the first of them the only authority (the PoA half; more are added
/// by `Authorize` txs), and a treasury address no key controls (derived from the chain id, so
/// slashed stake and treasury mints stay out of anyone's reach until governance decides).
pub fn new_genesis(
    path: &Path,
    chain_id: &str,
    genesis_time: u64,
    validators: &[PublicKey],
    stake: Option<u64>,
) -> Result<Genesis, HomeError> {
    let params = aitbc_chain::Params::default();
    let stake = stake.unwrap_or(params.min_stake);
    let treasury = aitbc_chain::Hash::of(format!("aitbc treasury/{chain_id}").as_bytes());
    let genesis = Genesis {
        chain_id: chain_id.to_string(),
        genesis_time,
        validators: validators
            .iter()
            .enumerate()
            .map(|(i, pubkey)| GenesisValidator {
                pubkey: *pubkey,
                stake,
                name: format!("validator-{i}"),
            })
            .collect(),
        authorities: validators.iter().take(1).map(Address::of).collect(),
        coordinators: vec![],
        faucet: None,
        treasury: Address(treasury.0[..20].try_into().unwrap_or([0; 20])),
        accounts: vec![],
        params,
    };
    let json = genesis.to_json();
    let checked = Genesis::from_json(json.as_bytes()).map_err(|source| HomeError::Genesis {
        path: path.to_path_buf(),
        source,
    })?;
    write_new(path, json.as_bytes())?;
    Ok(checked)
}

pub fn add_validator(
    path: &Path,
    pubkey: PublicKey,
    stake: u64,
    name: String,
) -> Result<Genesis, HomeError> {
    edit_genesis(path, |g| {
        g.validators.push(GenesisValidator {
            pubkey,
            stake,
            name,
        })
    })
}

pub fn add_account(path: &Path, address: Address, balance: u64) -> Result<Genesis, HomeError> {
    edit_genesis(path, |g| {
        g.accounts.push(GenesisAccount { address, balance })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Layer, NodeConfig};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_genesis_validates_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("genesis.json");
        let pks: Vec<PublicKey> = (1..=3u8)
            .map(|i| SecretKey::from_seed([i; 32]).public())
            .collect();
        let g = new_genesis(&path, "net-1", 1_700_000_000_000, &pks, None).expect("new");
        assert_eq!(read_genesis(&path).expect("read"), g);
        assert_eq!(g.validators.len(), 3);
        assert_eq!(g.validators[0].stake, g.params.min_stake);
        assert_eq!(g.authorities, vec![Address::of(&pks[0])]);
        assert!(
            new_genesis(&path, "net-1", 0, &pks, None).is_err(),
            "overwrote"
        );
        let other = dir.path().join("g2.json");
        assert!(
            new_genesis(&other, "net-1", 0, &[], None).is_err(),
            "no validators"
        );
        assert!(
            new_genesis(&other, "net-1", 0, &pks, Some(1)).is_err(),
            "stake too low"
        );
        assert!(!other.exists(), "a rejected genesis left a file");
    }

    #[test]
    fn init_makes_a_loadable_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("n0");
        let s = init(&home, "testnet-1").expect("init");
        let cfg = NodeConfig::load(
            Some(&home.join(CONFIG_FILE)),
            &Layer::default(),
            &Layer::default(),
        )
        .expect("config loads");
        assert_eq!(cfg.chain_id, "testnet-1");
        assert_eq!(cfg.db_path, home.join(DATA_DIR));
        let key = keys::load_validator_key(&cfg.validator_key).expect("validator key");
        assert_eq!(key.public(), s.pubkey);
        keys::load_node_key(&cfg.node_key).expect("node key");
        let g = read_genesis(&cfg.genesis).expect("genesis");
        assert_eq!(g.validators.len(), 1);
        assert_eq!(g.validators[0].pubkey, s.pubkey);
        assert_eq!(g.hash(), s.genesis_hash);
        let mode = fs::metadata(&home).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn init_refuses_non_empty_and_accepts_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), "aitbc-dev").expect("empty dir is fine");
        let err = init(dir.path(), "aitbc-dev").expect_err("second init");
        assert!(matches!(err, HomeError::Exists(_)), "{err}");
        let err = init(&dir.path().join("x"), "Bad Id").expect_err("bad chain id");
        assert!(err.to_string().contains("chain_id"), "{err}");
        assert!(
            !dir.path().join("x").exists(),
            "nothing made on a bad chain id"
        );
    }

    #[test]
    fn rejected_edit_leaves_file_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), "aitbc-dev").expect("init");
        let path = dir.path().join(GENESIS_FILE);
        let before = fs::read(&path).expect("read");
        let g = read_genesis(&path).expect("genesis");
        let pk = g.validators[0].pubkey;
        let err = add_validator(&path, pk, g.params.min_stake, String::new())
            .expect_err("duplicate validator");
        assert!(err.to_string().contains("twice"), "{err}");
        let err = add_validator(
            &path,
            SecretKey::from_seed([9; 32]).public(),
            1,
            String::new(),
        )
        .expect_err("stake below min");
        assert!(err.to_string().contains("min_stake"), "{err}");
        assert_eq!(fs::read(&path).expect("read"), before);

        let new = SecretKey::from_seed([9; 32]).public();
        let g = add_validator(&path, new, g.params.min_stake, "v1".into()).expect("add");
        assert_eq!(g.validators.len(), 2);
        assert_eq!(read_genesis(&path).expect("reread"), g);
    }
}
