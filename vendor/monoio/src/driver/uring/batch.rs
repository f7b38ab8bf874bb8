//! Wake-up batching for the park (added for ringproxy; not in upstream monoio 0.2.4).
//!
//! A worker that sleeps until one completion is ready wakes once per completion: under load
//! that is a scheduler round trip for every read. Since Linux 6.12 `io_uring_enter` takes
//! `min_wait_usec`: sleep until `want` completions are ready, or until `min_wait_usec` has
//! passed with at least one. `want` follows what each park found ready, so a lone connection
//! still wakes for its one completion and waits for nothing.

use std::{io, time::Duration};

use io_uring::{types::Timespec, IoUring};

// From <linux/io_uring.h>; the `io-uring` 0.6 crate keeps its copies private.
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;

/// How a sleeping io_uring driver batches its wake-ups; see [`crate::set_wait_batching`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitBatching {
    /// The most completions one wake-up waits for.
    pub max_completions: u32,
    /// The longest a wake-up is held back once at least one completion is ready.
    pub max_delay: Duration,
}

/// `struct io_uring_getevents_arg` as of Linux 6.12, where `pad` became `min_wait_usec`
/// (the `io-uring` 0.6 crate still names it `pad` and offers no setter).
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// The per-driver state: the limits and how many completions the next park waits for.
#[derive(Debug)]
pub(crate) struct Batcher {
    max_completions: u32,
    min_wait_usec: u32,
    want: u32,
}

impl Batcher {
    /// `None` when the limits leave nothing to batch (at most one completion, or no delay).
    pub(crate) fn new(limits: WaitBatching) -> Option<Self> {
        let min_wait_usec = u32::try_from(limits.max_delay.as_micros()).unwrap_or(u32::MAX);
        if limits.max_completions <= 1 || min_wait_usec == 0 {
            return None;
        }
        Some(Self {
            max_completions: limits.max_completions,
            min_wait_usec,
            want: 1,
        })
    }

    /// How many completions the next park waits for.
    #[cfg(test)]
    pub(crate) fn want(&self) -> u32 {
        self.want
    }

    /// Submits what is queued and sleeps until `want` completions are ready, until the
    /// minimum wait has passed with at least one, or until `timeout`. An old kernel that
    /// does not know `min_wait_usec` answers `EINVAL`.
    pub(crate) fn submit_and_wait(
        &mut self,
        uring: &mut IoUring,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let timespec = timeout.map(super::super::util::timespec);
        let arg = GetEventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            // Waiting for one needs no minimum wait, and arming its timer costs a little.
            min_wait_usec: if self.want > 1 { self.min_wait_usec } else { 0 },
            ts: timespec
                .as_ref()
                .map_or(0, |ts| ts as *const Timespec as u64),
        };
        let to_submit = uring.submission().len() as u32;
        let flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
        // SAFETY: `arg` has the kernel's `io_uring_getevents_arg` layout and, with the
        // timespec it points to, outlives the call; the kernel only reads them.
        let entered = unsafe {
            uring
                .submitter()
                .enter(to_submit, self.want, flags, Some(&arg))
        };
        match entered {
            Err(e) if !matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Err(e),
            _ => {
                self.adapt(uring.completion().len());
                Ok(())
            }
        }
    }

    /// More completions than asked for were ready: ask for one more next time. Fewer: the
    /// minimum wait ran out, so ask for what did arrive.
    fn adapt(&mut self, ready: usize) {
        let ready = u32::try_from(ready).unwrap_or(u32::MAX);
        if ready > self.want {
            self.want = (self.want + 1).min(self.max_completions);
        } else if ready < self.want {
            self.want = ready.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batcher(max_completions: u32) -> Batcher {
        Batcher::new(WaitBatching {
            max_completions,
            max_delay: Duration::from_micros(50),
        })
        .unwrap()
    }

    #[test]
    fn nothing_to_batch_without_a_delay_or_with_one_completion() {
        let no_delay = WaitBatching {
            max_completions: 8,
            max_delay: Duration::ZERO,
        };
        let one = WaitBatching {
            max_completions: 1,
            max_delay: Duration::from_micros(50),
        };
        assert!(Batcher::new(no_delay).is_none());
        assert!(Batcher::new(one).is_none());
    }

    #[test]
    fn starts_at_one_and_climbs_while_more_arrive_than_asked() {
        let mut b = batcher(4);
        assert_eq!(b.want(), 1);
        for expected in [2, 3, 4, 4] {
            b.adapt(10);
            assert_eq!(b.want(), expected);
        }
    }

    #[test]
    fn a_lone_completion_keeps_it_at_one() {
        let mut b = batcher(8);
        for _ in 0..5 {
            b.adapt(1);
        }
        assert_eq!(b.want(), 1);
    }

    #[test]
    fn falls_to_what_arrived_when_the_wait_ran_out() {
        let mut b = batcher(8);
        for _ in 0..7 {
            b.adapt(100);
        }
        assert_eq!(b.want(), 8);
        b.adapt(3);
        assert_eq!(b.want(), 3);
        b.adapt(0);
        assert_eq!(b.want(), 1);
    }
}
