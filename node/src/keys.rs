//! Key files: the validator key (signs consensus messages) and the node key (the libp2p
//! identity). SPEC §2 keeps them in separate files so a node's network identity can be rotated
//! or exposed without touching the key that holds stake.
//!
//! Both files hold a 32-byte ed25519 seed as 64 hex characters and a trailing newline. They are
//! created with mode 0600 and `create_new`, so generating a key can never overwrite (and so
//! destroy) an existing one, and loading refuses a file that group or others can access: a
//! leaked validator key lets anyone double-sign in this validator's name and get it slashed.
//! Nothing here prints key material; errors name the file, never its content.

use aitbc_chain::SecretKey;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes in a key file: 64 hex characters and a newline. Reading stops one byte later, so a
/// huge or wrong file is refused without reading it whole.
const KEY_FILE_LEN: usize = 65;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "key file {path} has mode {mode:04o}, so group or others can access it; \
         run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("key file {path} must hold exactly 64 hex characters (a 32-byte seed)")]
    Malformed { path: PathBuf },
}

/// The libp2p identity seed. A separate type from [`SecretKey`] so the two keys cannot be
/// mixed up; `Debug` never shows the seed.
pub struct NodeKey([u8; 32]);

impl NodeKey {
    pub fn generate() -> NodeKey {
        // Same generator as validator keys: an ed25519 seed is 32 uniformly random bytes.
        NodeKey(SecretKey::generate().seed())
    }
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey(seed)
    }
    /// The raw seed, for building the libp2p keypair.
    pub fn seed(&self) -> [u8; 32] {
        self.0
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

/// Writes `seed` to a new file at `path` with mode 0600. Fails if anything exists there.
pub fn write_seed_file(path: &Path, seed: &[u8; 32]) -> Result<(), KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(e)
            }
        })?;
    let mut text = hex::encode(seed);
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(io_err)?;
    // A key that is reported written must survive a crash right after `init`.
    file.sync_all().map_err(io_err)
}

/// Reads a seed written by [`write_seed_file`], refusing loose permissions and bad content.
pub fn read_seed_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut buf = Vec::with_capacity(KEY_FILE_LEN + 1);
    fs::File::open(path)
        .and_then(|f| f.take(KEY_FILE_LEN as u64 + 1).read_to_end(&mut buf))
        .map_err(io_err)?;
    let malformed = || KeyError::Malformed {
        path: path.to_path_buf(),
    };
    let digits = buf.strip_suffix(b"\n").unwrap_or(&buf);
    if digits.len() != 64 {
        return Err(malformed());
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(digits, &mut seed).map_err(|_| malformed())?;
    Ok(seed)
}

/// Generates a validator key and writes it to a new file.
pub fn create_validator_key(path: &Path) -> Result<SecretKey, KeyError> {
    let key = SecretKey::generate();
    write_seed_file(path, &key.seed())?;
    Ok(key)
}

pub fn load_validator_key(path: &Path) -> Result<SecretKey, KeyError> {
    read_seed_file(path).map(SecretKey::from_seed)
}

/// Generates a node (libp2p) key and writes it to a new file.
pub fn create_node_key(path: &Path) -> Result<NodeKey, KeyError> {
    let key = NodeKey::generate();
    write_seed_file(path, &key.seed())?;
    Ok(key)
}

pub fn load_node_key(path: &Path) -> Result<NodeKey, KeyError> {
    read_seed_file(path).map(NodeKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn created_0600_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("validator_key");
        let key = create_validator_key(&path).expect("create");
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let loaded = load_validator_key(&path).expect("load");
        assert_eq!(loaded.public(), key.public());

        let npath = dir.path().join("node_key");
        let nk = create_node_key(&npath).expect("create node key");
        assert_eq!(mode(&npath), 0o600);
        assert_eq!(load_node_key(&npath).expect("load").seed(), nk.seed());
        assert_ne!(nk.seed(), key.seed());
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        let first = create_validator_key(&path).expect("create");
        let err = create_validator_key(&path).expect_err("second create must fail");
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"));
        let still = load_validator_key(&path).expect("load");
        assert_eq!(still.public(), first.public());
    }

    #[test]
    fn group_readable_refused_with_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        create_validator_key(&path).expect("create");
        for loose in [0o640, 0o604, 0o660, 0o610] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).expect("chmod");
            let err = load_validator_key(&path).expect_err("loose mode must be refused");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        load_validator_key(&path).expect("0400 is fine");
    }

    #[test]
    fn malformed_content_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = "ab".repeat(32);
        let bad: [(&str, String); 6] = [
            ("empty", String::new()),
            ("short", "ab".repeat(31)),
            ("long", format!("{good}00")),
            ("not hex", "zz".repeat(32)),
            ("0x prefix", format!("0x{}", &good[2..])),
            ("two newlines", format!("{good}\n\n")),
        ];
        for (what, content) in bad {
            let path = dir.path().join(what.replace(' ', "_"));
            fs::write(&path, &content).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = read_seed_file(&path).expect_err(what);
            assert!(matches!(err, KeyError::Malformed { .. }), "{what}: {err}");
            assert!(
                !err.to_string().contains(&good),
                "error must not echo content"
            );
        }
        // Without the trailing newline is still exactly 64 hex characters.
        let path = dir.path().join("no_newline");
        fs::write(&path, &good).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_seed_file(&path).expect("load"), [0xab; 32]);
    }

    #[test]
    fn debug_hides_secrets() {
        let nk = NodeKey::from_seed([7; 32]);
        assert_eq!(format!("{nk:?}"), "NodeKey(..)");
        let sk = SecretKey::from_seed([7; 32]);
        assert!(!format!("{sk:?}").contains(&hex::encode([7u8; 32])));
    }
}
