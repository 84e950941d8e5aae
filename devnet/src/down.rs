//! `aitbc-devnet down` and `reset`: stop the nodes, and optionally remove the devnet folder
//! (`--clean`) or only each node's chain data (`reset`).
//!
//! Deleting is guarded: a folder is removed only if it holds a readable `devnet.json`, so a
//! mistyped `--dir` can never wipe an arbitrary folder, and `reset` removes only the `data/`
//! folder of homes whose names it derives itself.

use crate::process;
use crate::record::{Devnet, Member};
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Time a node gets to exit after SIGTERM (it syncs its store and WAL) before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// What `down` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Nodes that were running.
    pub stopped: usize,
    /// Of those, nodes that ignored SIGTERM for [`GRACE`] and were killed.
    pub killed: usize,
}

/// Stops every running node (validators and light peers) of the devnet in `dir` (canonical)
/// and clears the pids.
pub fn stop_nodes(dir: &Path, devnet: &mut Devnet) -> Result<Stopped> {
    let running: Vec<(u32, PathBuf)> = devnet
        .running(dir)
        .into_iter()
        .filter_map(|m| Some((devnet.get(m)?.pid?, m.home(dir))))
        .collect();
    let killed = process::stop(&running, GRACE)?;
    devnet.clear_pids();
    devnet.save(dir)?;
    Ok(Stopped {
        stopped: running.len(),
        killed: killed.len(),
    })
}

/// `down [--clean]`: a human summary of what was done.
pub fn down(dir: &Path, clean: bool) -> Result<String> {
    let (dir, mut devnet) = crate::status::load(dir).map_err(|e| {
        if clean {
            e.context("--clean deletes only a devnet folder (one with devnet.json)")
        } else {
            e
        }
    })?;
    let s = stop_nodes(&dir, &mut devnet)?;
    let mut msg = match (s.stopped, s.killed) {
        (0, _) => "no node was running".to_string(),
        (n, 0) => format!("stopped {n} node(s)"),
        (n, k) => format!("stopped {n} node(s); {k} ignored SIGTERM for {GRACE:?} and were killed"),
    };
    if clean {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        msg.push_str(&format!("; removed {}", dir.display()));
    }
    Ok(msg)
}

/// `reset`: `down`, then delete each node's `data/` (chain store and consensus WAL; a light
/// peer's verified headers), keeping keys, config and genesis, so the next `up` starts a fresh
/// chain from the same genesis with the same validators, peer ids and ports.
pub fn reset(dir: &Path) -> Result<String> {
    let (dir, mut devnet) = crate::status::load(dir)?;
    let s = stop_nodes(&dir, &mut devnet)?;
    let members: Vec<Member> = devnet.members().collect();
    for &m in &members {
        wipe_chain_data(&dir, &devnet, m)?;
    }
    Ok(format!(
        "stopped {} node(s) and removed the chain data of all {}; `aitbc-devnet up --dir {}` \
         starts a fresh chain",
        s.stopped,
        members.len(),
        dir.display()
    ))
}

/// Deletes `member`'s `data/` (its chain store and consensus WAL, or a light peer's headers)
/// and leaves an empty one, keeping keys, config and genesis: the node then starts from
/// genesis, as a late joiner does. Refused while the node runs: a store deleted under a live
/// node is a corrupted node, not a fresh one.
pub fn wipe_chain_data(dir: &Path, devnet: &Devnet, member: Member) -> Result<()> {
    if devnet.is_running(dir, member) {
        bail!("{member} is running; stop it before deleting its chain data");
    }
    let data = member.home(dir).join(aitbc_node::home::DATA_DIR);
    match fs::remove_dir_all(&data) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", data.display())),
    }
    // `init` makes data/ with 0700; a node would create it anyway, but not with that mode.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .with_context(|| format!("creating {}", data.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Devnet {
        crate::record::test_record(2)
    }

    #[test]
    fn clean_refuses_a_folder_without_a_record() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("precious.txt"), "keep me").expect("write");
        let err = down(t.path(), true).expect_err("not a devnet");
        let msg = format!("{err:#}");
        assert!(msg.contains("deletes only a devnet folder"), "{msg}");
        assert!(t.path().join("precious.txt").exists());
        let err = down(&t.path().join("missing"), true).expect_err("no folder");
        assert!(format!("{err:#}").contains("no such folder"), "{err:#}");
    }

    #[test]
    fn down_with_nothing_running_and_clean_removes_the_folder() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("net");
        fs::create_dir(&dir).expect("mkdir");
        let mut d = record();
        // A stale pid: this test process, which is no node.
        d.nodes[0].pid = Some(std::process::id());
        d.save(&dir).expect("save");
        assert_eq!(down(&dir, false).expect("down"), "no node was running");
        let after = Devnet::load(&dir).expect("load").expect("record");
        assert!(after.nodes.iter().all(|n| n.pid.is_none()), "pids cleared");
        let msg = down(&dir, true).expect("down --clean");
        assert!(msg.contains("removed"), "{msg}");
        assert!(!dir.exists());
    }

    #[test]
    fn reset_empties_data_and_keeps_the_rest() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(t.path()).expect("canonical");
        record().save(&dir).expect("save");
        for i in 0..2 {
            let home = Devnet::home(&dir, i);
            fs::create_dir_all(home.join("data/db")).expect("mkdir");
            fs::write(home.join("data/consensus.wal"), "wal").expect("write");
            fs::write(home.join("validator_key"), "key").expect("write");
        }
        reset(&dir).expect("reset");
        for i in 0..2 {
            let home = Devnet::home(&dir, i);
            assert!(home.join("validator_key").exists());
            assert_eq!(fs::read_dir(home.join("data")).expect("ls").count(), 0);
        }
        assert!(Devnet::load(&dir).expect("load").is_some());
    }
}
