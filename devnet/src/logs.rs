//! `aitbc-devnet logs NODE [-f]`: print or follow a node's `node.log`.

use crate::process::LOG_FILE;
use crate::record::Devnet;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// How often `-f` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Parses `NODE`: `2` or `node2`, within the devnet's `count` nodes.
pub fn parse_node(arg: &str, count: usize) -> Result<usize> {
    let digits = arg.strip_prefix("node").unwrap_or(arg);
    let i: usize = digits
        .parse()
        .map_err(|_| anyhow!("NODE {arg:?}: expected a node number such as 0 or node0"))?;
    if i >= count {
        bail!(
            "NODE {arg}: this devnet has node0 to node{}",
            count.saturating_sub(1)
        );
    }
    Ok(i)
}

/// Copies node `node`'s log to `out`; with `follow`, keeps copying what is appended until
/// interrupted (or until `out` is closed, e.g. `| head`).
pub fn run(dir: &Path, node: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let (dir, devnet) = crate::status::load(dir)?;
    let i = parse_node(node, devnet.nodes.len())?;
    let path = Devnet::home(&dir, i).join(LOG_FILE);
    let mut file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !follow => {
            bail!("node{i} has no log yet ({} does not exist)", path.display())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => wait_for(&path)?,
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut pos = match copy(&mut file, out) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            // Removed (e.g. `down --clean` in another terminal): wait for it to come back.
            Err(_) => {
                file = wait_for(&path)?;
                pos = 0;
                continue;
            }
        };
        if len < pos {
            // Truncated or replaced: start over from its beginning.
            file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            pos = 0;
        }
        file.seek(SeekFrom::Start(pos))
            .with_context(|| format!("reading {}", path.display()))?;
        match copy(&mut file, out) {
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

fn copy(file: &mut fs::File, out: &mut dyn Write) -> io::Result<u64> {
    let n = io::copy(file, out)?;
    out.flush()?;
    Ok(n)
}

fn wait_for(path: &Path) -> Result<fs::File> {
    loop {
        match fs::File::open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::thread::sleep(FOLLOW_POLL),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_argument_is_checked_and_named() {
        assert_eq!(parse_node("2", 4).expect("2"), 2);
        assert_eq!(parse_node("node3", 4).expect("node3"), 3);
        let err = parse_node("4", 4).expect_err("out of range");
        assert_eq!(err.to_string(), "NODE 4: this devnet has node0 to node3");
        let err = parse_node("x", 4).expect_err("not a number");
        assert!(err.to_string().starts_with("NODE \"x\""), "{err}");
        assert!(parse_node("-1", 4).is_err());
    }
}
