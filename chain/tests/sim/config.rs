//! What one simulated run looks like: validators and their roles, timing, network chaos and the
//! scripted faults. [`SimConfig::random`] derives everything from a seed; scenario tests build
//! configs by hand.

use super::rng::{mix, stream, SplitMix64};

/// Network sizes the random runs cover.
pub const SIZES: [usize; 5] = [1, 4, 7, 10, 16];

/// Byzantine validators tolerated by `n`: `f = ⌊(n − 1) / 3⌋`.
pub fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// The network size of a random seed (a pure function of the seed, so `AITBC_SIM_SEED` alone
/// reproduces a run).
pub fn n_of(seed: u64) -> usize {
    SIZES[(mix(seed ^ 0x5eed_5eed) % SIZES.len() as u64) as usize]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Honest,
    /// Runs no engine, sends nothing.
    Silent,
    /// When it proposes, sends one signed block to part of the network and a second one to the
    /// rest (and Prepare/Commit for each block to the side that got it); some nodes get both.
    Equivocator,
    /// Every vote it signs is also signed for a second hash; each peer gets one or both.
    DoubleVoter,
    /// Proposes blocks the honest validation rejects (`state_root = Hash::of(b"invalid")`).
    InvalidProposer,
    /// Two nodes run honest engines with this one validator key.
    Twins,
}

impl Role {
    pub const BYZANTINE: [Role; 5] = [
        Role::Silent,
        Role::Equivocator,
        Role::DoubleVoter,
        Role::InvalidProposer,
        Role::Twins,
    ];

    pub fn is_honest(self) -> bool {
        self == Role::Honest
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Kill the node (drop its engine, keep its store and the durable part of its WAL). With
    /// `mid_step` the kill lands inside the node's next engine step, after a random number of
    /// that step's outputs have been carried out.
    Crash {
        node: usize,
        mid_step: bool,
    },
    Restart {
        node: usize,
    },
    /// A group id per node: a link is up iff both ends are in one group (also for messages
    /// already in flight).
    Partition(Vec<u8>),
    Heal,
}

/// Per-link message behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetParams {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    pub loss_permille: u64,
    pub dup_permille: u64,
    /// Messages delayed far beyond the normal bound (reordered across views and heights).
    pub long_permille: u64,
    pub long_max_ms: u64,
}

impl NetParams {
    /// The stable phase: every message arrives within 1..=50 ms, none is lost.
    pub fn stable() -> NetParams {
        NetParams {
            min_delay_ms: 1,
            max_delay_ms: 50,
            loss_permille: 0,
            dup_permille: 0,
            long_permille: 0,
            long_max_ms: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub n: usize,
    /// Per validator (index = validator); twins add a second node for their validator.
    pub roles: Vec<Role>,
    pub block_time_ms: u64,
    pub view_timeout_ms: u64,
    /// The validator set's powers change every `rotation` heights (epoch boundaries).
    pub rotation: u64,
    /// All powers 10 (scenario tests); otherwise honest 10..=20 per epoch, Byzantine 10.
    pub equal_powers: bool,
    /// Network until the stable phase.
    pub chaos: NetParams,
    /// When the stable phase starts (partitions heal, loss stops, crashed honest nodes
    /// restart) and the liveness clock runs. `None`: no stable phase, no liveness check.
    pub stable_at_ms: Option<u64>,
    /// Scripted faults, (time ms, fault); node indices as in [`SimConfig::nodes`].
    pub faults: Vec<(u64, Fault)>,
    /// Nodes that start late (from an empty store), with their start time.
    pub late_start: Vec<(usize, u64)>,
    /// A node that gets a message for a height it already committed pushes the blocks from that
    /// height on to the sender (like serving sync).
    pub push_sync: bool,
    /// Liveness: heights every honest node must commit beyond the highest honest height at the
    /// start of the stable phase.
    pub liveness_heights: u64,
    /// A run processing more events than this fails (runaway protection).
    pub max_events: u64,
}

impl SimConfig {
    /// A calm network of `n` honest validators with equal powers, no faults; scenario tests
    /// start from it.
    pub fn calm(n: usize) -> SimConfig {
        SimConfig {
            seed: 0,
            n,
            roles: vec![Role::Honest; n],
            block_time_ms: 200,
            view_timeout_ms: 1000,
            rotation: 5,
            equal_powers: true,
            chaos: NetParams::stable(),
            stable_at_ms: None,
            faults: Vec::new(),
            late_start: Vec::new(),
            push_sync: false,
            liveness_heights: 2,
            max_events: 5_000_000,
        }
    }

    /// Nodes: validator `i` runs node `i`; each twins validator runs one more node, numbered
    /// from `n` on in validator order.
    pub fn nodes(&self) -> Vec<(usize, Role)> {
        let mut v: Vec<(usize, Role)> = self.roles.iter().copied().enumerate().collect();
        for (i, r) in self.roles.iter().enumerate() {
            if *r == Role::Twins {
                v.push((i, Role::Twins));
            }
        }
        v
    }

    pub fn f(&self) -> usize {
        max_faulty(self.n)
    }

    pub fn byzantine(&self) -> Vec<(usize, Role)> {
        self.roles
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, r)| !r.is_honest())
            .collect()
    }

    /// Everything derived from `seed`: n, the f Byzantine validators and their behaviours,
    /// timing, the chaos network and a fault script (partitions that heal, crash-restarts of
    /// honest nodes, sometimes a late joiner).
    pub fn random(seed: u64) -> SimConfig {
        let n = n_of(seed);
        let mut rng = SplitMix64::new(stream(seed, 1));
        let f = max_faulty(n);
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let mut roles = vec![Role::Honest; n];
        for &i in &order[..f] {
            roles[i] = Role::BYZANTINE[rng.index(Role::BYZANTINE.len())];
        }
        let block_time_ms = rng.range(10, 100) * 10;
        let view_timeout_ms = rng.range(10, 40) * 50;
        // Chaos is long enough for several partitions and crash cycles, short enough that the
        // CI set fits in minutes (the cost of a simulated second grows with n²).
        let (lo, hi) = match n {
            1 => (15_000, 30_000),
            4 => (25_000, 50_000),
            7 => (15_000, 30_000),
            10 => (12_000, 24_000),
            _ => (8_000, 16_000),
        };
        let chaos_ms = rng.range(lo, hi);
        // How rough the chaos phase is: a quarter of the seeds mild (mostly about delays and
        // Byzantine behaviour, the chain makes progress), half moderate, a quarter harsh.
        let (loss, dup, long, gap, crash) = match rng.below(4) {
            0 => (20, 30, 10, (5_000, 15_000), 150),
            1 | 2 => (80, 80, 40, (2_000, 10_000), 300),
            _ => (200, 100, 80, (1_000, 8_000), 400),
        };
        let chaos = NetParams {
            min_delay_ms: 1,
            max_delay_ms: rng.range(10, 50),
            loss_permille: rng.range(0, loss),
            dup_permille: rng.range(0, dup),
            long_permille: rng.range(0, long),
            long_max_ms: rng.range(200, 3000),
        };
        let mut cfg = SimConfig {
            seed,
            n,
            roles,
            block_time_ms,
            view_timeout_ms,
            rotation: 5,
            equal_powers: false,
            chaos,
            stable_at_ms: Some(chaos_ms),
            faults: Vec::new(),
            late_start: Vec::new(),
            push_sync: rng.chance(500),
            liveness_heights: 2,
            max_events: 5_000_000,
        };
        let nodes = cfg.nodes();
        let honest: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].1.is_honest())
            .collect();
        // Partitions: every 1-8 s heal, isolate a minority, or split the network in two.
        let mut t = 0;
        loop {
            t += rng.range(gap.0, gap.1);
            if t >= chaos_ms {
                break;
            }
            let fault = match rng.below(10) {
                0..=3 => Fault::Heal,
                4..=6 => {
                    let mut idx: Vec<usize> = (0..nodes.len()).collect();
                    rng.shuffle(&mut idx);
                    let k = rng.range(1, ((nodes.len() - 1) / 2).max(1) as u64) as usize;
                    let mut g = vec![0u8; nodes.len()];
                    for &i in &idx[..k.min(nodes.len())] {
                        g[i] = 1;
                    }
                    Fault::Partition(g)
                }
                _ => Fault::Partition((0..nodes.len()).map(|_| rng.below(2) as u8).collect()),
            };
            cfg.faults.push((t, fault));
        }
        // Crash-restarts of honest nodes (up to two cycles each); restarts that would fall in
        // the stable phase happen when it starts.
        for &node in &honest {
            let mut t = 0;
            for _ in 0..2 {
                if !rng.chance(crash) {
                    break;
                }
                t += rng.range(0, chaos_ms / 2);
                if t >= chaos_ms {
                    break;
                }
                cfg.faults.push((
                    t,
                    Fault::Crash {
                        node,
                        mid_step: rng.chance(500),
                    },
                ));
                t += rng.range(100, 6_000);
                if t >= chaos_ms {
                    break;
                }
                cfg.faults.push((t, Fault::Restart { node }));
            }
        }
        // Sometimes an honest node joins late, from an empty store.
        if rng.chance(150) {
            let node = honest[rng.index(honest.len())];
            let crashes = cfg.faults.iter().any(|(_, f)| {
                matches!(f, Fault::Crash { node: c, .. } | Fault::Restart { node: c } if *c == node)
            });
            if !crashes {
                cfg.late_start.push((node, rng.range(1_000, chaos_ms)));
            }
        }
        cfg.faults.sort_by_key(|(t, _)| *t);
        cfg
    }
}
