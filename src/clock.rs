//! The clock the request path reads.
//!
//! Deadlines, pool ages, retry budgets and health leases need the time many times per request,
//! but only to within a few milliseconds: timeouts fire from a sweep every 50 ms anyway
//! (`conns`). `coarse_now` reads `CLOCK_MONOTONIC_COARSE`, which the kernel updates once per
//! tick (1–4 ms) and the vDSO hands out without touching the hardware clock: 8 ns per call on
//! these VMs against 34 ns for `Instant::now()` (`CLOCK_MONOTONIC`, which reads the TSC and
//! scales it). Latency samples for the balancers need the precise clock and use `Instant`.
//!
//! Both clocks count from the same origin, so a coarse reading converts to an `Instant`
//! through one anchor taken at first use: coarse and precise instants can be compared, the
//! coarse one being at most one tick behind.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The same moment as an `Instant` and as a `CLOCK_MONOTONIC` reading.
struct Anchor {
    instant: Instant,
    monotonic: libc::timespec,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The current time to within one kernel tick, never later than `Instant::now()`.
pub fn coarse_now() -> Instant {
    let anchor = ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        monotonic: read(libc::CLOCK_MONOTONIC),
    });
    let now = read(libc::CLOCK_MONOTONIC_COARSE);
    // Subtracting the parts keeps the division of a nanosecond count out of the common path.
    let mut secs = now.tv_sec - anchor.monotonic.tv_sec;
    let mut nanos = now.tv_nsec - anchor.monotonic.tv_nsec;
    if nanos < 0 {
        secs -= 1;
        nanos += NANOS_PER_SEC;
    }
    match (u64::try_from(secs), u32::try_from(nanos)) {
        (Ok(secs), Ok(nanos)) => anchor.instant + Duration::new(secs, nanos),
        // Within the tick the anchor was taken in, the coarse clock still shows its start.
        _ => anchor.instant,
    }
}

fn read(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    // The monotonic clocks exist on every Linux this runs on; were the call to fail, `ts`
    // stays zero and times read as the anchor's, which only makes deadlines later.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One kernel tick at the slowest timer frequency Linux builds with (100 Hz), with room.
    const TICK: Duration = Duration::from_millis(12);

    #[test]
    fn coarse_time_trails_the_precise_clock_by_at_most_a_tick() {
        for _ in 0..1000 {
            let before = Instant::now();
            let coarse = coarse_now();
            let after = Instant::now();
            assert!(coarse <= after, "coarse {coarse:?} after precise {after:?}");
            assert!(
                before.saturating_duration_since(coarse) <= TICK,
                "coarse {coarse:?} more than a tick behind {before:?}"
            );
        }
    }

    #[test]
    fn coarse_time_advances() {
        let start = coarse_now();
        std::thread::sleep(Duration::from_millis(30));
        let elapsed = coarse_now().saturating_duration_since(start);
        assert!(
            elapsed >= Duration::from_millis(30) - TICK && elapsed <= Duration::from_secs(5),
            "elapsed {elapsed:?}"
        );
    }
}
