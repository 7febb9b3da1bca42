//! Arena planning: every activation gets a byte offset in one session arena, chosen so that
//! tensors that are live at the same time never overlap.
//!
//! Time is measured in steps: step 0 copies the graph input into the arena, step `i + 1` runs
//! op `i`. A tensor is live from the step that produces it to the last step that reads it
//! (inclusive; the graph output to the end). Because an op's inputs are live at the op's own
//! step and its outputs are born at that step, an op's outputs never overlap its inputs.
//!
//! Algorithm ("greedy by size, best fit", as TFLite's arena planner): tensors are placed
//! largest first; each goes into the smallest gap between already placed tensors whose
//! lifetimes intersect its own that is large enough, or after the highest of them. Sizes are
//! rounded up to the alignment so every offset is aligned.

/// One tensor to place: `size` bytes, live during steps `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub size: usize,
    pub first: usize,
    pub last: usize,
}

impl Interval {
    /// True if the two lifetimes share a step.
    pub fn overlaps_in_time(&self, o: &Interval) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// The result: `offsets[i]` for `intervals[i]`, and the arena size, both in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    pub offsets: Vec<usize>,
    pub size: usize,
}

/// Place `intervals` in an arena; offsets and the arena size are multiples of `align`
/// (a power of two).
pub fn plan(intervals: &[Interval], align: usize) -> ArenaPlan {
    let align = align.max(1);
    let round = |s: usize| s.div_ceil(align).saturating_mul(align);
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    // Largest first; ties by birth so the result is deterministic.
    order.sort_by(|&a, &b| {
        intervals[b].size.cmp(&intervals[a].size).then(intervals[a].first.cmp(&intervals[b].first)).then(a.cmp(&b))
    });
    let mut offsets = vec![0usize; intervals.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(intervals.len());
    let mut size = 0usize;
    let mut busy: Vec<(usize, usize)> = Vec::new();
    for &i in &order {
        let t = &intervals[i];
        let need = round(t.size);
        busy.clear();
        busy.extend(
            placed
                .iter()
                .filter(|&&p| intervals[p].overlaps_in_time(t))
                .map(|&p| (offsets[p], offsets[p] + round(intervals[p].size))),
        );
        busy.sort_unstable();
        // Scan gaps between the busy ranges, keep the smallest one that fits.
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut cursor = 0usize;
        for &(s, e) in &busy {
            if s > cursor {
                let gap = s - cursor;
                if gap >= need && best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(e);
        }
        let off = match best {
            Some((_, o)) => o,
            None => cursor,
        };
        offsets[i] = off;
        size = size.max(off + need);
        placed.push(i);
    }
    ArenaPlan { offsets, size }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn assert_no_overlap(iv: &[Interval], p: &ArenaPlan, align: usize) {
        for (i, a) in iv.iter().enumerate() {
            assert_eq!(p.offsets[i] % align, 0);
            assert!(p.offsets[i] + a.size <= p.size, "tensor {i} exceeds the arena");
            for (j, b) in iv.iter().enumerate().skip(i + 1) {
                if a.overlaps_in_time(b) && a.size > 0 && b.size > 0 {
                    let (sa, ea) = (p.offsets[i], p.offsets[i] + a.size);
                    let (sb, eb) = (p.offsets[j], p.offsets[j] + b.size);
                    assert!(ea <= sb || eb <= sa, "live tensors {i} {a:?}@{sa} and {j} {b:?}@{sb} overlap");
                }
            }
        }
    }

    #[test]
    fn random_graphs_never_overlap_live_tensors() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let steps = 1 + rng.below(30);
            let n = 1 + rng.below(40);
            let iv: Vec<Interval> = (0..n)
                .map(|_| {
                    let first = rng.below(steps as u64);
                    let last = first + rng.below((steps - first) as u64 + 1);
                    Interval { size: 1 + rng.below(5000), first, last }
                })
                .collect();
            let p = plan(&iv, 64);
            assert_no_overlap(&iv, &p, 64);
            let sum: usize = iv.iter().map(|t| t.size.div_ceil(64) * 64).sum();
            assert!(p.size <= sum);
        }
    }

    #[test]
    fn chain_reuses_memory() {
        // x0 -> op1 -> x1 -> op2 -> x2 ...: each tensor is read by the next op only.
        let iv: Vec<Interval> = (0..10).map(|i| Interval { size: 1000 + 10 * i, first: i, last: i + 1 }).collect();
        let p = plan(&iv, 64);
        assert_no_overlap(&iv, &p, 64);
        let sum: usize = iv.iter().map(|t| t.size.div_ceil(64) * 64).sum();
        assert!(p.size * 3 < sum, "arena {} should be far below the sum {sum}", p.size);
        // Two buffers suffice for a chain (ping-pong): at most the two largest rounded sizes.
        assert!(p.size <= 2 * 1152, "arena {}", p.size);
    }

    #[test]
    fn adjacent_steps_conflict_and_disjoint_steps_share() {
        let iv = [Interval { size: 100, first: 0, last: 1 }, Interval { size: 100, first: 1, last: 2 }];
        let p = plan(&iv, 64);
        assert_ne!(p.offsets[0], p.offsets[1]);
        let iv = [Interval { size: 100, first: 0, last: 1 }, Interval { size: 100, first: 2, last: 3 }];
        let p = plan(&iv, 64);
        assert_eq!(p.offsets[0], p.offsets[1]);
        assert_eq!(p.size, 128);
    }
}
