//! Which of the peers gossipsub reports slow are reset.
//!
//! gossipsub reports a peer (`Event::SlowPeer`) at a heartbeat when, since the one before, its
//! queue to the peer was full (`connection_handler_queue_len`, 5000 messages) or a message
//! waited in it past its deadline and was dropped (1 s for a forwarded one). A peer that stopped
//! reading is reported at every heartbeat while gossip flows, and holds its full queue for as
//! long as it stays connected. An honest peer that was short of CPU for a moment (16 validators
//! on 2 cores were seen to be) is reported at a heartbeat or two, then drains its queue. So a
//! peer is reset only once it has been reported at [`SLOW_HEARTBEATS`] heartbeats in a row.

use libp2p::PeerId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Heartbeats in a row at which a peer must be reported slow before it is reset: at the default
/// 1 s heartbeat, a peer that read nothing for about three seconds while gossip flowed.
pub(crate) const SLOW_HEARTBEATS: u32 = 3;

pub(crate) struct SlowPeers {
    heartbeat: Duration,
    /// Per peer: at how many heartbeats in a row it was reported, and when last.
    streaks: HashMap<PeerId, (u32, Instant)>,
}

impl SlowPeers {
    pub(crate) fn new(heartbeat: Duration) -> Self {
        SlowPeers {
            heartbeat,
            streaks: HashMap::new(),
        }
    }

    /// gossipsub reported `peer` slow at `now` (once a heartbeat at most): whether it has now
    /// been reported at [`SLOW_HEARTBEATS`] heartbeats in a row, and is to be reset.
    pub(crate) fn reported(&mut self, peer: PeerId, now: Instant) -> bool {
        let (count, last) = self.streaks.entry(peer).or_insert((0, now));
        // A heartbeat with no report ends the streak. Half a heartbeat of slack: a busy node's
        // heartbeat comes late, never early.
        if now.duration_since(*last) > self.heartbeat * 3 / 2 {
            *count = 0;
        }
        *count += 1;
        *last = now;
        let due = *count >= SLOW_HEARTBEATS;
        if due {
            self.streaks.remove(&peer);
        }
        due
    }

    /// `peer` has no connection left: the next one starts with a fresh queue and streak.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.streaks.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAT: Duration = Duration::from_secs(1);

    #[test]
    fn only_a_streak_of_heartbeats_resets() {
        let mut slow = SlowPeers::new(BEAT);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t = Instant::now();
        // Reported at two heartbeats, then not at the third: the streak starts again.
        assert!(!slow.reported(a, t));
        assert!(!slow.reported(a, t + BEAT));
        assert!(!slow.reported(a, t + 3 * BEAT));
        assert!(!slow.reported(a, t + 4 * BEAT));
        // A late heartbeat still counts; another peer's reports are its own.
        assert!(!slow.reported(b, t + 4 * BEAT));
        assert!(slow.reported(a, t + 5 * BEAT + BEAT * 2 / 5));
        // Reset: counting starts again.
        assert!(!slow.reported(a, t + 6 * BEAT));
        // A peer that disconnected starts again too.
        assert!(!slow.reported(b, t + 5 * BEAT));
        slow.forget(&b);
        assert!(!slow.reported(b, t + 6 * BEAT));
        assert!(!slow.reported(b, t + 7 * BEAT));
        assert!(slow.reported(b, t + 8 * BEAT));
    }
}
