//! `aitbc-devnet logs NODE [-f]`: print or follow a node's `node.log`.

use crate::process::LOG_FILE;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// How often `-f` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Copies `node`'s log to `out`; with `follow`, keeps copying what is appended until
/// interrupted (or until `out` is closed, e.g. `| head`).
pub fn run(dir: &Path, node: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let (dir, devnet) = crate::status::load(dir)?;
    let member = devnet.member(node)?;
    let path = member.home(&dir).join(LOG_FILE);
    let mut file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !follow => {
            bail!(
                "{member} has no log yet ({} does not exist)",
                path.display()
            )
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
