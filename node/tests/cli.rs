//! End-to-end: runs the built `aitbc-node` binary against a temporary node home.

use aitbc_chain::genesis::Genesis;
use aitbc_chain::{Address, SecretKey};
use aitbc_node::config::Key;
use std::path::Path;
use std::process::{Command, Output};

/// The binary with every config variable removed, so the caller's environment cannot leak in.
fn node() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aitbc-node"));
    for k in Key::ALL {
        cmd.env_remove(k.env_name());
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn aitbc-node")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}

#[test]
fn init_show_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("node0");
    let init = ok(&run(node()
        .args(["init", "--home"])
        .arg(&home)
        .args(["--chain-id", "e2e-1"])));
    for f in [
        "node_key",
        "validator_key",
        "config.toml",
        "genesis.json",
        "data",
    ] {
        assert!(home.join(f).exists(), "{f} missing");
    }

    let show = ok(&run(node().args(["keys", "show", "--home"]).arg(&home)));
    let addr = field(&show, "validator address:");
    assert!(addr.starts_with("ait1"), "{show}");
    assert_eq!(addr, field(&init, "validator address:"));
    let pubkey = field(&show, "validator pubkey:");
    assert!(pubkey.starts_with("0x") && pubkey.len() == 66, "{show}");
    let seed = std::fs::read_to_string(home.join("validator_key")).expect("read key");
    assert!(
        !show.contains(seed.trim()),
        "keys show must not print the secret"
    );
    assert!(
        !init.contains(seed.trim()),
        "init must not print the secret"
    );

    let genesis = home.join("genesis.json");
    let funded = Address::of(&SecretKey::from_seed([5; 32]).public()).to_string();
    ok(&run(node()
        .args(["genesis", "add-account", "--genesis"])
        .arg(&genesis)
        .args(["--address", &funded, "--balance", "5000"])));
    let g = Genesis::from_json(&std::fs::read(&genesis).expect("read")).expect("valid genesis");
    assert_eq!(g.chain_id, "e2e-1");
    // The validator's own dev account (funded by `init`), then the added one.
    assert_eq!(g.accounts.len(), 2);
    assert_eq!(g.accounts[0].balance, aitbc_node::home::DEV_BALANCE);
    assert_eq!(g.faucet, Some(g.accounts[0].address));
    assert_eq!(g.accounts[1].address.to_string(), funded);
    assert_eq!(g.accounts[1].balance, 5000);

    // A second validator, then a duplicate account that must be refused without a change.
    let v1 = SecretKey::from_seed([6; 32]).public().to_string();
    ok(&run(node()
        .args(["genesis", "add-validator", "--genesis"])
        .arg(&genesis)
        .args(["--pubkey", &v1, "--stake", &g.params.min_stake.to_string()])
        .args(["--name", "v1"])));
    let before = std::fs::read(&genesis).expect("read");
    let out = run(node()
        .args(["genesis", "add-account", "--genesis"])
        .arg(&genesis)
        .args(["--address", &funded, "--balance", "1"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("twice"));
    assert_eq!(std::fs::read(&genesis).expect("read"), before);
    let g = Genesis::from_json(&before).expect("valid genesis");
    assert_eq!(g.validators.len(), 2);
}

#[test]
fn init_twice_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("node0");
    ok(&run(node().args(["init", "--home"]).arg(&home)));
    let key_before = std::fs::read(home.join("validator_key")).expect("read");
    let out = run(node().args(["init", "--home"]).arg(&home));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("never overwrites"), "{err}");
    assert_eq!(
        std::fs::read(home.join("validator_key")).expect("read"),
        key_before
    );
}

#[test]
fn keys_show_refuses_loose_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("n");
    ok(&run(node().args(["init", "--home"]).arg(&home)));
    let key = home.join("validator_key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run(node().args(["keys", "show", "--home"]).arg(&home));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn config_show_precedence_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("n");
    ok(&run(node().args(["init", "--home"]).arg(&home)));
    let cfg = home.join("config.toml");
    let out = ok(&run(node()
        .args(["config", "show", "--config"])
        .arg(&cfg)
        .env("RPC_BIND", "127.0.0.1:9999")
        .env("LOG_FORMAT", "json")
        .args(["--log-format", "human"])));
    assert!(out.contains("rpc_bind = \"127.0.0.1:9999\""), "{out}");
    assert!(out.contains("log_format = \"human\""), "{out}");
    assert!(
        out.contains(&format!("{}", home.join("data").display())),
        "{out}"
    );

    let out = run(node()
        .args(["config", "show", "--config"])
        .arg(&cfg)
        .env("RPC_BIND", "x"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RPC_BIND (environment): \"x\" is not a socket address"),
        "{err}"
    );
    assert!(Path::new(&cfg).exists());
}

#[test]
fn config_show_rpc_limits_from_env_and_flags() {
    let out = ok(&run(node()
        .args(["config", "show"])
        .env("RPC_MAX_CONNECTIONS", "64")
        .env("RPC_RATE_PER_IP", "50")
        .env("RPC_CORS_ORIGINS", "https://env.example")
        .args(["--rpc-max-body-bytes", "100000", "--rpc-rate-per-ip", "0"])
        .args([
            "--rpc-cors-origins",
            "https://app.example.com,http://localhost:3000",
        ])));
    assert!(out.contains("rpc_max_body_bytes = 100000"), "{out}");
    assert!(out.contains("rpc_max_connections = 64"), "{out}");
    assert!(out.contains("rpc_rate_per_ip = 0"), "{out}");
    assert!(
        out.contains("rpc_cors_origins = [\"https://app.example.com\", \"http://localhost:3000\"]"),
        "{out}"
    );

    let out = run(node()
        .args(["config", "show"])
        .args(["--rpc-cors-origins", "https://a.com/app"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--rpc-cors-origins (command line): \"https://a.com/app\""),
        "{err}"
    );
}
