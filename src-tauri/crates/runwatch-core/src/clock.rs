//! Time as the engine sees it: milliseconds since the Unix epoch from an injectable clock,
//! so the whole state machine is tested without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC); the unit of every time in the store.
pub type Millis = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time: what is stored, and what survives a restart.
    fn now(&self) -> Millis;
    /// Milliseconds since an arbitrary start, never set back or forward: how the engine
    /// tells time passing from the wall clock being stepped.
    fn monotonic(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

static START: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);

impl Clock for SystemClock {
    fn monotonic(&self) -> Millis {
        START.elapsed().as_millis() as Millis
    }

    fn now(&self) -> Millis {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
    }
}

/// A clock that moves only when told to: for tests. Time passing moves both the wall
/// clock and the monotonic one; [`FakeClock::jump`] steps the wall clock alone.
#[derive(Debug, Clone)]
pub struct FakeClock {
    wall: Arc<AtomicI64>,
    mono: Arc<AtomicI64>,
}

impl FakeClock {
    pub fn at(start: Millis) -> Self {
        Self { wall: Arc::new(AtomicI64::new(start)), mono: Arc::new(AtomicI64::new(0)) }
    }

    /// Lets `by` pass.
    pub fn advance(&self, by: Duration) {
        let ms = by.as_millis() as Millis;
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.mono.fetch_add(ms, Ordering::SeqCst);
    }

    /// Lets time pass until the wall clock reads `to`.
    pub fn set(&self, to: Millis) {
        let delta = to - self.wall.swap(to, Ordering::SeqCst);
        self.mono.fetch_add(delta, Ordering::SeqCst);
    }

    /// Steps the wall clock by `by` ms (NTP, a user, a suspended VM) while no time passes.
    pub fn jump(&self, by: Millis) {
        self.wall.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Millis {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Millis {
        self.mono.load(Ordering::SeqCst)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Seconds as store milliseconds.
pub fn secs(s: u64) -> Millis {
    (s as Millis).saturating_mul(1000)
}

/// A store time as local "YYYY-MM-DD HH:MM:SS", for people.
pub fn format_local(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| format!("@{ms}ms"), |t| t.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M:%S").to_string())
}
