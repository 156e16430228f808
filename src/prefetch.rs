//! Software prefetch for one-off walks over memory the caches do not hold: a cold render
//! visits 10k label sets in label order, which is not the order they were allocated in, and
//! each first touch waited for memory (on a VM, a TLB miss walks two page tables).

use crate::snapshot::Series;

/// How many series ahead of the one being written a walk asks for: enough to cover a miss,
/// few enough that the lines are still cached when the walk gets there.
pub(crate) const AHEAD: usize = 8;

/// Asks the CPU to bring the cache line at `p` closer. A hint only: it never faults, and
/// does nothing on targets without the instruction.
#[inline(always)]
pub(crate) fn line<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint that does not access memory architecturally: it never
    // faults, whatever the address, and SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches the label set of `series[i + AHEAD]` (its first two cache lines: the counts and
/// the first labels' pointers), if there is one.
#[inline(always)]
pub(crate) fn labels_ahead(series: &[Series], i: usize) {
    if let Some(s) = series.get(i + AHEAD) {
        let p = std::sync::Arc::as_ptr(&s.labels).cast::<u8>();
        line(p);
        line(p.wrapping_add(64));
    }
}
