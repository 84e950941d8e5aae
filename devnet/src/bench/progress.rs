//! The progress line on stderr, hand-rolled (a progress crate would be the biggest dependency
//! of the tool for one line of output).
//!
//! On a terminal the line is redrawn in place about twice a second; into a file or a pipe (a
//! test, a CI log) a plain line is written every few seconds instead, so the log stays short.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often a plain (non-terminal) progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// The current rate is taken over this much recent history: with 1 s blocks a shorter span
/// would swing between 0 and twice the rate.
const RATE_SPAN: Duration = Duration::from_secs(3);

pub struct Progress {
    tty: bool,
    last_plain: Option<Instant>,
    drawn: bool,
    history: VecDeque<(Instant, u64)>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        Progress {
            tty,
            last_plain: None,
            drawn: false,
            history: VecDeque::new(),
        }
    }

    /// Shows `line`: redrawn in place on a terminal, else printed every few seconds (always
    /// when `force`).
    pub fn show(&mut self, line: &str, force: bool) {
        let mut err = std::io::stderr().lock();
        // Progress output is best effort: a closed stderr must not stop the bench.
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            self.drawn = true;
        } else if force || self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            let _ = writeln!(err, "{line}");
            self.last_plain = Some(Instant::now());
        }
        let _ = err.flush();
    }

    /// Ends the in-place line, so what follows starts on a fresh one.
    pub fn finish(&mut self) {
        if self.tty && self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }

    /// Committed transactions per second over the last few seconds, given the running count.
    pub fn rate(&mut self, now: Instant, committed: u64) -> f64 {
        self.history.push_back((now, committed));
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > RATE_SPAN)
        {
            self.history.pop_front();
        }
        rate_over(&self.history)
    }
}

/// Growth per second between the first and last of `(time, count)` samples.
pub fn rate_over(history: &VecDeque<(Instant, u64)>) -> f64 {
    match (history.front(), history.back()) {
        (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
            c1.saturating_sub(c0) as f64 / t1.duration_since(t0).as_secs_f64()
        }
        _ => 0.0,
    }
}

/// `[#######-------------]` for `fraction` (clamped to 0..=1) of `width` cells.
pub fn bar(fraction: f64, width: usize) -> String {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = ((f * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(full), "-".repeat(width - full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(bar(0.0, 10), "[----------]");
        assert_eq!(bar(0.5, 10), "[#####-----]");
        assert_eq!(bar(1.0, 4), "[####]");
        assert_eq!(bar(7.0, 4), "[####]");
        assert_eq!(bar(f64::NAN, 2), "[--]");
    }

    #[test]
    fn rate_is_growth_over_the_recent_span() {
        let t0 = Instant::now();
        let mut p = Progress::new();
        assert_eq!(p.rate(t0, 0), 0.0);
        assert_eq!(p.rate(t0 + Duration::from_secs(1), 1_000), 1_000.0);
        assert_eq!(p.rate(t0 + Duration::from_secs(2), 3_000), 1_500.0);
        // Older than the span: the first sample drops out.
        let r = p.rate(t0 + Duration::from_secs(4), 3_000);
        assert_eq!(r, 2_000.0 / 3.0);
    }
}
