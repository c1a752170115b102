//! Times are kept as UTC milliseconds since the epoch and shown as `2025-12-23T10:45:00.000Z`.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};

/// This node's clock.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// How far the clock that decides deadlines (the database's, on PostgreSQL) is ahead of this
/// node's, as last read.
static DECIDING_CLOCK_AHEAD: AtomicI64 = AtomicI64::new(0);

/// The time by the clock that decides deadlines, as this node last learned it: what timers and
/// deadline checks go by, so that a node whose own clock is off neither expires offers early nor
/// shows them late. Writes read that clock itself.
pub fn deciding_now() -> i64 {
    now_ms().saturating_add(DECIDING_CLOCK_AHEAD.load(Ordering::Relaxed))
}

/// Tells [`deciding_now`] the deciding clock's time, just read.
pub fn learn_deciding_clock(now: i64) {
    DECIDING_CLOCK_AHEAD.store(now.saturating_sub(now_ms()), Ordering::Relaxed);
}

pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_iso() -> String {
    iso(now_ms())
}
