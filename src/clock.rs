//! Time, injected: every part of a node that reads a clock (stamping commands, expiry checks, the
//! TC3 signature window, the leader-contact age, the scheduler) reads it through a [`Clock`], so
//! tests can drive time by hand instead of restarting processes under a faked clock.
//!
//! The replicated registry never reads a clock: the leader's wall time travels in the command.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock milliseconds since the Unix epoch (may step).
    fn wall_ms(&self) -> u64;

    /// Milliseconds on a monotonic clock, starting at 1 (0 is kept for "never"). Durations that
    /// must not follow wall-clock steps, such as the age of the last leader contact, use it.
    fn monotonic_ms(&self) -> u64;

    /// Wall-clock seconds since the Unix epoch.
    fn wall_secs(&self) -> u64 {
        self.wall_ms() / 1000
    }
}

/// The clock every component of one node shares.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic_ms(&self) -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock moved only by hand, for tests: both readings advance together by [`ManualClock::advance_ms`],
/// and the wall clock alone can be stepped by [`ManualClock::set_wall_ms`].
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicU64,
    monotonic: AtomicU64,
}

impl ManualClock {
    /// A clock showing `wall_ms` on the wall and 1 on the monotonic clock.
    pub fn new(wall_ms: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            wall: AtomicU64::new(wall_ms),
            monotonic: AtomicU64::new(1),
        })
    }

    /// Moves both clocks forward.
    pub fn advance_ms(&self, ms: u64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.monotonic.fetch_add(ms, Ordering::SeqCst);
    }

    /// Steps the wall clock (forwards or backwards); the monotonic clock does not move.
    pub fn set_wall_ms(&self, wall_ms: u64) {
        self.wall.store(wall_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall_ms(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(5_000);
        assert_eq!(
            (c.wall_ms(), c.wall_secs(), c.monotonic_ms()),
            (5_000, 5, 1)
        );
        c.advance_ms(1_500);
        assert_eq!((c.wall_ms(), c.monotonic_ms()), (6_500, 1_501));
        c.set_wall_ms(1_000);
        assert_eq!((c.wall_ms(), c.monotonic_ms()), (1_000, 1_501));
    }

    #[test]
    fn system_clock_is_monotonic_and_near_the_wall() {
        let c = SystemClock;
        let (a, b) = (c.monotonic_ms(), c.monotonic_ms());
        assert!(a >= 1 && b >= a);
        assert!(c.wall_secs() > 1_700_000_000);
    }
}
