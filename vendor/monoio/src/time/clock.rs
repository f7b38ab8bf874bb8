//! Source of time abstraction.
//!
//! By default, `std::time::Instant::now()` is used. However, when the
//! `test-util` feature flag is enabled, the values returned for `now()` are
//! configurable.

use std::cell::Cell;

use crate::time::Instant;

#[derive(Default, Debug, Clone)]
pub(crate) struct Clock {}

thread_local! {
    /// The last time this thread's timer driver read the clock (see [`loop_now`]).
    static LOOP_NOW: Cell<Option<std::time::Instant>> = const { Cell::new(None) };
}

pub(crate) fn now() -> Instant {
    let now = std::time::Instant::now();
    LOOP_NOW.with(|cached| cached.set(Some(now)));
    Instant::from_std(now)
}

/// Forgets the cached time when this thread's timer driver goes away.
pub(crate) fn clear_loop_now() {
    LOOP_NOW.with(|cached| cached.set(None));
}

/// The time as of this thread's event loop turn: the clock reading the timer driver made
/// when the runtime last woke up (to fire due timers) or submitted a batch of operations.
///
/// Code that needs the time only to within one turn of the loop (deadlines, ages,
/// timestamps for a log line) can use it instead of reading the clock itself, as nginx uses
/// its cached time: on a busy runtime a turn serves many tasks, each of which would otherwise
/// read the clock several times. It never goes backwards. Without a runtime whose timer is
/// enabled on this thread it reads the clock.
pub fn loop_now() -> std::time::Instant {
    LOOP_NOW
        .with(Cell::get)
        .unwrap_or_else(std::time::Instant::now)
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {}
    }

    pub(crate) fn now(&self) -> Instant {
        now()
    }
}

#[cfg(all(test, target_os = "linux", feature = "iouring"))]
mod tests {
    use std::time::{Duration, Instant};

    use super::loop_now;

    #[test]
    fn loop_now_follows_the_runtime_and_reads_the_clock_outside_one() {
        let before = Instant::now();
        assert!(loop_now() >= before, "outside a runtime: the clock");
        let mut rt = crate::RuntimeBuilder::<crate::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let (first, second) = rt.block_on(async {
            crate::time::sleep(Duration::from_millis(1)).await;
            let first = loop_now();
            crate::time::sleep(Duration::from_millis(20)).await;
            (first, loop_now())
        });
        assert!(first >= before);
        assert!(
            second >= first + Duration::from_millis(20),
            "a park after a 20 ms sleep refreshed it"
        );
        assert!(second <= Instant::now());
        drop(rt);
        let after = Instant::now();
        assert!(loop_now() >= after, "the driver is gone: the clock again");
    }
}
