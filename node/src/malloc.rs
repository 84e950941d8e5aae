//! glibc allocator settings for a long-running node.
//!
//! With glibc's defaults a validator under saturating load held 35–45% of its resident memory
//! as free heap (mallinfo2): up to 8 arenas per core, each keeping the holes left by freed
//! blocks, gossip batches and sled values, and a mmap threshold that rises to the largest chunk
//! freed so far (a few MB), so block-sized buffers land in those heaps too. Devnet bench,
//! 4 validators, 200 ms blocks, saturated, 45 s, sled cache 16 MiB: 260–298 MiB per validator
//! with glibc's defaults, 213–257 with 2 arenas, 187–205 with these settings (node0, which also
//! answers the bench's `getBlock` calls: 348–361, 269–302, 235–268); committed tx/s the same
//! within the noise of the shared machine (±5%). A mmap threshold of 256 KiB saved ≈ 15 MiB
//! more but cost ≈ 10%.
//!
//! Those settings still leave free memory *inside* the heaps: glibc returns memory on its own
//! only from the top of a heap, and after a burst the top is rarely free. A validator that had
//! run saturated (100 ms blocks, 60 s) sat idle at 272 MiB with 129 MiB of it free heap
//! (`malloc_stats`); one `malloc_trim(0)` took it to 180 MiB. So a thread trims every
//! [`TRIM_EVERY`]: `malloc_trim` gives back every whole free page of every arena.
//!
//! Set through `mallopt` rather than `MALLOC_ARENA_MAX`-style environment variables so every
//! operator gets them, in full and light mode alike. Elsewhere than Linux/glibc this does
//! nothing.

use std::time::Duration;

/// How often free heap pages are given back to the system.
pub const TRIM_EVERY: Duration = Duration::from_secs(2);

/// Applies the settings and starts the trimming thread. Call it once, early, before the node
/// starts its threads; a refused setting is logged and leaves glibc's default in place.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::tune();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::os::raw::c_int;

    // From glibc's <malloc.h>.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    const M_ARENA_MAX: c_int = -8;

    /// Allocations from this size up get their own mapping, returned to the system when freed.
    const MMAP_THRESHOLD: c_int = 1 << 20;
    /// Free memory kept at the top of a heap before it is returned.
    const TRIM_THRESHOLD: c_int = 16 << 20;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
        fn malloc_trim(pad: usize) -> c_int;
    }

    pub(super) fn tune() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = c_int::try_from(cores.clamp(2, 8)).unwrap_or(2);
        for (param, value) in [
            (M_ARENA_MAX, arenas),
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ] {
            // SAFETY: mallopt only changes allocator parameters; it is called before the
            // runtime and the node's threads start, and a refused setting (return 0) leaves the
            // default in place.
            if unsafe { mallopt(param, value) } == 0 {
                tracing::warn!(component = "node", event = "mallopt_refused", param, value);
            }
        }
        let trimmer = std::thread::Builder::new()
            .name("aitbc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(super::TRIM_EVERY);
                // SAFETY: malloc_trim takes each arena's lock itself and only releases pages
                // that hold no allocation.
                unsafe { malloc_trim(0) };
            });
        if let Err(e) = trimmer {
            tracing::warn!(
                component = "node",
                event = "malloc_trim_thread",
                "not started: {e}"
            );
        }
    }
}
