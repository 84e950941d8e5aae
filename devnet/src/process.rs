//! Node processes: finding the `aitbc-node` binary, spawning a node detached from this process,
//! recognising it again by pid in a later invocation, and signalling it.

use crate::record::{Devnet, Member, NodeRecord};
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The node binary's file name.
pub const NODE_BIN: &str = "aitbc-node";
/// A node's log (its stderr) inside its home.
pub const LOG_FILE: &str = "node.log";

/// Environment variables the node reads as config (SPEC §8) that the devnet must not inherit:
/// a `DB_PATH` or `VALIDATOR_KEY` exported in the user's shell would otherwise point every
/// node at the same store or key. `LOG_LEVEL` and `LOG_FORMAT` are passed through on purpose,
/// so `LOG_LEVEL=debug aitbc-devnet up` works.
fn scrubbed_env() -> impl Iterator<Item = String> {
    use aitbc_node::config::Key;
    Key::ALL
        .into_iter()
        .filter(|k| !matches!(k, Key::LogLevel | Key::LogFormat))
        .map(Key::env_name)
}

/// The `aitbc-node` to run: `--node-bin` if given, else the one next to this executable (where
/// cargo puts every workspace binary), else the first on `PATH`.
pub fn find_node_bin(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        if !p.is_file() {
            bail!("--node-bin {}: no such file", p.display());
        }
        return std::path::absolute(p).with_context(|| format!("--node-bin {}", p.display()));
    }
    let exe = std::env::current_exe().context("locating the aitbc-devnet executable")?;
    if let Some(sibling) = exe.parent().map(|d| d.join(NODE_BIN)) {
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let candidate = d.join(NODE_BIN);
            if candidate.is_file() {
                return std::path::absolute(&candidate)
                    .with_context(|| format!("resolving {}", candidate.display()));
            }
        }
    }
    bail!(
        "cannot find {NODE_BIN} next to {} or on PATH; build it with `cargo build -p aitbc-node` \
         or pass --node-bin",
        exe.display()
    )
}

/// Runs `aitbc-node <args>` to completion and returns its stdout, failing with its stderr.
pub fn run_node_cli(bin: &Path, args: &[&OsStr]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .env_clear_config()
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        bail!(
            "`{NODE_BIN} {}` failed ({}): {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("aitbc-node printed non-UTF-8 output")
}

trait CommandEnv {
    fn env_clear_config(&mut self) -> &mut Self;
}

impl CommandEnv for Command {
    fn env_clear_config(&mut self) -> &mut Self {
        for k in scrubbed_env() {
            self.env_remove(k);
        }
        self
    }
}

/// `aitbc-node init --home HOME --chain-id CHAIN_ID`: a node home with keys and config (its
/// genesis is the caller's to replace with the devnet's).
pub fn init_home(bin: &Path, home: &Path, chain_id: &str) -> Result<()> {
    check_interrupted()?;
    run_node_cli(
        bin,
        &[
            OsStr::new("init"),
            OsStr::new("--home"),
            home.as_os_str(),
            OsStr::new("--chain-id"),
            OsStr::new(chain_id),
        ],
    )
    .map(drop)
}

/// `aitbc-node run` on `home` with its P2P and RPC binds, as every devnet node starts: stdin
/// and stdout null, stderr to `log`, the node's config variables kept out of its environment,
/// and its own process group, so it survives the command that started it and a Ctrl-C in that
/// command's terminal (which signals the foreground group only).
pub(crate) fn node_command(
    bin: &Path,
    home: &Path,
    p2p_bind: &str,
    rpc_port: u16,
    log: fs::File,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--home")
        .arg(home)
        .args(["--p2p-bind", p2p_bind])
        .args(["--rpc-bind", &format!("127.0.0.1:{rpc_port}")])
        .env_clear_config()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    cmd
}

/// Starts `member` of `devnet` in `dir` (an absolute path) as a detached process (see
/// [`node_command`]), its stderr appended to its `node.log`. A validator runs with the
/// devnet's block time; a light peer with `--light`.
pub fn spawn_node(
    bin: &Path,
    dir: &Path,
    devnet: &Devnet,
    member: Member,
    bootstrap: Option<&str>,
) -> Result<Child> {
    let node: &NodeRecord = devnet
        .get(member)
        .with_context(|| format!("{member} is not in the devnet record"))?;
    let home = member.home(dir);
    let log_path = home.join(LOG_FILE);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    // A marker between runs, so a restarted node's log shows where each run starts.
    writeln!(
        log,
        "==== aitbc-devnet: starting {member} (p2p {}, rpc {}) at unix ms {} ====",
        node.p2p_bind(),
        node.rpc_url(),
        now_ms()
    )
    .with_context(|| format!("writing {}", log_path.display()))?;
    let mut cmd = node_command(bin, &home, &node.p2p_bind(), node.rpc_port, log);
    match member {
        Member::Validator(_) => cmd.args(["--block-time", &devnet.block_time_ms.to_string()]),
        Member::Light(_) => cmd.arg("--light"),
    };
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap-peers", b]);
    }
    cmd.spawn()
        .with_context(|| format!("starting {} for {member}", bin.display()))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    // An atomic store is async-signal-safe; everything else happens in the polling loops.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag (see [`check_interrupted`]) instead of ending this
/// process, so that `up` interrupted half-way (Ctrl-C) still stops the nodes it has started:
/// they run in their own process groups, so the terminal's SIGINT does not reach them.
/// Handlers are reset to the default in spawned programs (exec), so nodes are unaffected.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, handler);
        }
    }
}

/// Fails once SIGINT or SIGTERM has arrived (after [`catch_interrupts`]).
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether `pid` is alive and is `aitbc-node run --home <home>`. Pids are reused, so a pid in a
/// stale record may by now belong to anything; on Linux the command line in `/proc` tells.
/// A zombie (exited, not yet reaped) is not running.
pub fn is_node_process(pid: u32, home: &Path) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 1 {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        let _ = pid_t;
        linux_is_node(pid, home)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No /proc: fall back to existence. SAFETY: kill with signal 0 sends nothing; it only
        // checks that the process exists and that we may signal it.
        let _ = home;
        let r = unsafe { libc::kill(pid_t, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[cfg(target_os = "linux")]
fn linux_is_node(pid: u32, home: &Path) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    // State is the field after the command name, which is in parentheses and may itself
    // contain spaces or parentheses: read after the last ')'.
    let Ok(stat) = fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    if matches!(state, None | Some("Z") | Some("X") | Some("x")) {
        return false;
    }
    let Ok(cmdline) = fs::read(proc.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let home = home.as_os_str().as_encoded_bytes();
    args.iter().any(|a| *a == b"run".as_slice())
        && args
            .windows(2)
            .any(|w| w[0] == b"--home".as_slice() && w[1] == home)
}

/// Sends `signal` to `pid` (checked: never 0, 1 or negative, which would reach whole groups).
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a node pid"))?;
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a single positive process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The entries of `list` whose pid is still that node's process.
fn still_running(list: &[(u32, PathBuf)]) -> Vec<(u32, PathBuf)> {
    list.iter()
        .filter(|(pid, home)| is_node_process(*pid, home))
        .cloned()
        .collect()
}

/// Stops the given `(pid, home)` nodes: SIGTERM, up to `grace` for them to exit (a node syncs
/// its store and WAL on SIGTERM), then SIGKILL and up to 5 s more. Returns the pids that were
/// still running at the SIGKILL.
pub fn stop(nodes: &[(u32, PathBuf)], grace: Duration) -> Result<Vec<u32>> {
    let mut left = still_running(nodes);
    for (pid, _) in &left {
        // ESRCH: it exited in between, which is what we want.
        let _ = send_signal(*pid, libc::SIGTERM);
    }
    let start = Instant::now();
    while !left.is_empty() && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(100));
        left = still_running(&left);
    }
    kill_and_wait(left)
}

/// SIGKILLs the given `(pid, home)` nodes at once, with no SIGTERM first: to the node this is
/// a crash (nothing synced on the way out), which is what fault tests and `stop --kill` want.
/// Returns the pids that were running and got the SIGKILL.
pub fn kill(nodes: &[(u32, PathBuf)]) -> Result<Vec<u32>> {
    kill_and_wait(still_running(nodes))
}

fn kill_and_wait(mut left: Vec<(u32, PathBuf)>) -> Result<Vec<u32>> {
    let killed: Vec<u32> = left.iter().map(|(p, _)| *p).collect();
    for (pid, _) in &left {
        let _ = send_signal(*pid, libc::SIGKILL);
    }
    let start = Instant::now();
    while !left.is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        left = still_running(&left);
    }
    if !left.is_empty() {
        let pids: Vec<String> = left.iter().map(|(p, _)| p.to_string()).collect();
        bail!("processes {} survived SIGKILL", pids.join(", "));
    }
    Ok(killed)
}

/// The last `lines` lines of a log file (at most 64 KiB of it), for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut f = fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut buf = Vec::new();
        f.take(MAX).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Waits (up to 5 s) until `pid` shows `home` on its command line. Right after `spawn`
    /// returns, the kernel may not have set up the new program's arguments yet (the parent of
    /// a vfork-style spawn resumes mid-exec), so `/proc/<pid>/cmdline` can briefly be empty.
    pub(crate) fn wait_until_visible(pid: u32, home: &Path) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if is_node_process(pid, home) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_pid_is_a_node_only_with_its_home_on_the_command_line() {
        // This test process is alive but is not `aitbc-node run --home …`.
        let me = std::process::id();
        assert!(!is_node_process(me, Path::new("/nonexistent/node0")));
        assert!(!is_node_process(0, Path::new("/x")));
        assert!(!is_node_process(1, Path::new("/x")));
        assert!(!is_node_process(u32::MAX, Path::new("/x")));

        // A process whose command line has `run --home <home>` is.
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("node0");
        let mut child = Command::new("sh")
            .args(["-c", "while :; do sleep 0.05; done", "run", "--home"])
            .arg(&home)
            .spawn()
            .expect("spawn sh");
        // `sh -c script name args…`: the words after the script are its $0 and $@, and stay on
        // the command line.
        let pid = child.id();
        #[cfg(target_os = "linux")]
        {
            assert!(wait_until_visible(pid, &home));
            assert!(!is_node_process(pid, &dir.path().join("node1")));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(!is_node_process(pid, &home));
    }

    #[test]
    fn signals_are_never_sent_to_groups() {
        for pid in [0, 1, u32::MAX] {
            let err = send_signal(pid, 0).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn stop_terms_then_kills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("node0");
        // Ignores SIGTERM, so stop must escalate to SIGKILL; it says when the trap is set.
        let ready = dir.path().join("ready");
        let mut child = Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; : > \"$READY\"; while :; do sleep 0.05; done",
                "run",
                "--home",
            ])
            .arg(&home)
            .env("READY", &ready)
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        #[cfg(target_os = "linux")]
        assert!(wait_until_visible(pid, &home));
        let start = Instant::now();
        while !ready.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "sh never got ready"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reap in the background so the killed child does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        if cfg!(target_os = "linux") {
            let killed = stop(&[(pid, home.clone())], Duration::from_millis(300)).expect("stop");
            assert_eq!(killed, vec![pid]);
        } else {
            let _ = send_signal(pid, libc::SIGKILL);
        }
        let status = reaper.join().expect("join").expect("wait");
        assert!(!status.success());
    }

    #[test]
    fn kill_sends_no_term_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("node0");
        // Writes a file if it ever gets SIGTERM; `kill` must not give it the chance.
        let termed = dir.path().join("termed");
        let mut child = Command::new("sh")
            .args([
                "-c",
                "trap ': > \"$TERMED\"' TERM; while :; do sleep 0.05; done",
                "run",
                "--home",
            ])
            .arg(&home)
            .env("TERMED", &termed)
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let reaper = std::thread::spawn(move || child.wait());
        #[cfg(target_os = "linux")]
        {
            assert!(wait_until_visible(pid, &home));
            assert_eq!(kill(&[(pid, home.clone())]).expect("kill"), vec![pid]);
            assert!(!is_node_process(pid, &home));
            // Nothing left to kill: a second call is a no-op.
            assert_eq!(kill(&[(pid, home)]).expect("kill again"), Vec::<u32>::new());
        }
        #[cfg(not(target_os = "linux"))]
        let _ = send_signal(pid, libc::SIGKILL);
        let status = reaper.join().expect("join").expect("wait");
        assert!(!status.success());
        assert!(!termed.exists(), "got SIGTERM before SIGKILL");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, text).expect("write");
        assert_eq!(log_tail(&path, 2), "line 98\nline 99");
        assert!(log_tail(&dir.path().join("missing"), 5).contains("cannot read"));
    }
}
