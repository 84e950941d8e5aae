//! Independent work split over the cores, for the two steps of a block that allow it: reading
//! the accounts its txs touch (`execution`) and merging and hashing the buckets it changes
//! (`store::ChainStore::prepare`). Each part is a run of consecutive items and the results come
//! back in the items' order, so what a step computes does not depend on how it was split.

use std::sync::OnceLock;

/// Most threads one step uses, the caller's included.
const MAX_THREADS: usize = 4;

/// The cores this process may use, up to [`MAX_THREADS`]. Read once: the standard library
/// reads the cgroup's quota files for it.
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_THREADS)
    })
}

/// How many parts `n` items make on at most `threads` threads, each worth a thread: at least
/// `min_per_part` items (a thread costs tens of µs).
pub(crate) fn parts(n: usize, min_per_part: usize, threads: usize) -> usize {
    threads.min(n / min_per_part.max(1)).max(1)
}

/// `f` over consecutive runs of `items`, one run per element of `states` (the first on this
/// thread, the others on threads of their own), with the results in the runs' order. A panic
/// in a part goes on in the caller.
pub(crate) fn map_parts<T: Sync, S: Send, R: Send>(
    items: &[T],
    states: &mut [S],
    f: impl Fn(&[T], &mut S) -> R + Sync,
) -> Vec<R> {
    let per_part = items.len().div_ceil(states.len().max(1)).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(per_part).zip(states.iter_mut());
        let Some((first, first_state)) = parts.next() else {
            return Vec::new();
        };
        let others: Vec<_> = parts
            .map(|(part, state)| scope.spawn(move || f(part, state)))
            .collect();
        let mut results = Vec::with_capacity(others.len() + 1);
        results.push(f(first, first_state));
        for handle in others {
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_in_order_and_cover_every_item() {
        let items: Vec<u32> = (0..1000).collect();
        for n in 1..=5 {
            let mut states = vec![0usize; n];
            let sums = map_parts(&items, &mut states, |part, seen| {
                *seen = part.len();
                part.to_vec()
            });
            assert_eq!(sums.concat(), items, "{n} parts");
            assert_eq!(states.iter().sum::<usize>(), items.len());
        }
        assert!(map_parts(&[] as &[u32], &mut [(); 3], |p, _| p.len()).is_empty());
    }

    #[test]
    fn parts_are_worth_a_thread() {
        assert_eq!(parts(10_000, 512, 4), 4);
        assert_eq!(parts(1_500, 512, 4), 2);
        assert_eq!(parts(100, 512, 4), 1);
        assert_eq!(parts(0, 512, 4), 1);
        assert_eq!(parts(10_000, 512, 1), 1);
    }
}
