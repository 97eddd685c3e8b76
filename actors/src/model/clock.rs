//! Wall-clock time as the protocols use it: milliseconds since the Unix epoch.
//!
//! Debug builds add the `clock-offset` rule of the test fault file (a signed
//! number of milliseconds, [`crate::faults`]) to every reading, so the test suite
//! can run a node whose clock is ahead or behind its peers'. Release builds never
//! read it.

/// Milliseconds since the Unix epoch (plus the test offset in debug builds).
pub fn now_ms() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    offset(real)
}

/// `now` milliseconds from the present, saturating.
pub fn ms_from_now(d: std::time::Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(debug_assertions)]
fn offset(real: u64) -> u64 {
    let off = crate::faults::clock_offset_ms();
    if off >= 0 {
        real.saturating_add(off.unsigned_abs())
    } else {
        real.saturating_sub(off.unsigned_abs())
    }
}

#[cfg(not(debug_assertions))]
fn offset(real: u64) -> u64 {
    real
}
