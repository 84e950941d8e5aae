//! CPU time and resident memory of a process, from Linux `/proc`.
//!
//! CPU% over a window is the growth of the process's user + system time divided by the wall
//! time, so 100% is one core busy and a multi-threaded node can exceed it. Memory is `VmRSS`
//! (resident now), sampled during the window so the report can give the peak under load; the
//! kernel's own `VmHWM` is a lifetime peak and would include start-up.

use std::path::Path;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` once the process is gone (or on a
/// system without `/proc`).
pub fn sample(pid: u32) -> Option<Sample> {
    sample_at(&Path::new("/proc").join(pid.to_string()))
}

/// The bench's own process.
pub fn sample_self() -> Option<Sample> {
    sample_at(Path::new("/proc/self"))
}

fn sample_at(dir: &Path) -> Option<Sample> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    Some(Sample {
        cpu_ticks: parse_stat_cpu(&stat)?,
        rss_bytes: parse_status_rss(&status)?,
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, almost always 100).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// CPU% between two samples taken `wall_secs` apart.
pub fn cpu_percent(before: Sample, after: Sample, wall_secs: f64, ticks_per_s: u64) -> Option<f64> {
    if wall_secs <= 0.0 || ticks_per_s == 0 {
        return None;
    }
    let ticks = after.cpu_ticks.checked_sub(before.cpu_ticks)?;
    Some(ticks as f64 / ticks_per_s as f64 / wall_secs * 100.0)
}

/// utime + stime from the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the last
/// `)`: after it come field 3 (state) onwards, making utime and stime (fields 14 and 15) the
/// 12th and 13th.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `VmRSS` in bytes from the text of `/proc/<pid>/status` (the kernel gives kB).
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_ascii_whitespace();
    let kb: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => kb.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let stat = "4242 (aitbc ) node) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    517 83 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(600));
        assert_eq!(parse_stat_cpu("4242 (x) S 1 2"), None, "truncated");
        assert_eq!(parse_stat_cpu("no parens at all"), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\taitbc-node\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss(status), Some(50 * 1024 * 1024));
        assert_eq!(
            parse_status_rss("Name:\tx\n"),
            None,
            "kernel thread: no VmRSS"
        );
        assert_eq!(parse_status_rss("VmRSS:\t12 MB\n"), None, "unknown unit");
    }

    #[test]
    fn cpu_percent_is_ticks_over_wall_time() {
        let s = |t| Sample {
            cpu_ticks: t,
            rss_bytes: 0,
        };
        assert_eq!(cpu_percent(s(100), s(250), 1.0, 100), Some(150.0));
        assert_eq!(cpu_percent(s(0), s(50), 2.0, 100), Some(25.0));
        assert_eq!(cpu_percent(s(9), s(1), 1.0, 100), None, "went backwards");
        assert_eq!(cpu_percent(s(0), s(1), 0.0, 100), None);
    }

    #[test]
    fn reads_this_process() {
        let s = sample_self().expect("/proc/self is readable on Linux");
        assert!(s.rss_bytes > 0);
        assert!(ticks_per_second() > 0);
        assert!(sample(std::process::id()).is_some());
    }
}
