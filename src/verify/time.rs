//! The time rules: the clock, the timestamp's unit, its spelling and its window.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default timestamp tolerance: ±300 seconds.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Auto-detected timestamps at or above this value are milliseconds (as seconds it would be
/// the year 5138; as milliseconds it is March 1973).
const AUTO_MILLIS_FROM: i64 = 100_000_000_000;

/// The time source for timestamp windows and credential expiry.
///
/// Implemented by [`SystemClock`] and by closures `Fn() -> SystemTime`.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock, the default [`Clock`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// The unit of the timestamp header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimestampUnit {
    /// By magnitude: values from 10¹¹ up are milliseconds, smaller ones seconds.
    #[default]
    Auto,
    /// Seconds since the Unix epoch.
    Seconds,
    /// Milliseconds since the Unix epoch.
    Millis,
}

/// A timestamp spelled as plain decimal digits: no sign, no leading zero (except `0`), no
/// spaces, not empty, within `i64`.
pub(crate) fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    match raw {
        [] => None,
        [b'0', _, ..] => None,
        digits => digits.iter().try_fold(0i64, |acc, &byte| {
            if !byte.is_ascii_digit() {
                return None;
            }
            acc.checked_mul(10)?.checked_add(i64::from(byte - b'0'))
        }),
    }
}

/// Whether `timestamp` is within ±`tolerance` of `now` (inclusive), in the timestamp's unit.
pub(crate) fn in_window(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
    unit: TimestampUnit,
) -> bool {
    let millis = match unit {
        TimestampUnit::Auto => timestamp >= AUTO_MILLIS_FROM,
        TimestampUnit::Seconds => false,
        TimestampUnit::Millis => true,
    };
    let (now, tolerance) = if millis {
        (unix_millis(now), tolerance.as_millis())
    } else {
        (unix_seconds(now), u128::from(tolerance.as_secs()))
    };
    let Some(now) = now else { return false };
    let tolerance = i64::try_from(tolerance).unwrap_or(i64::MAX);
    now.checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|distance| distance <= tolerance)
}

fn unix_seconds(now: SystemTime) -> Option<i64> {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs()).ok().map(|s| -s),
    }
}

fn unix_millis(now: SystemTime) -> Option<i64> {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).ok(),
        Err(before) => i64::try_from(before.duration().as_millis())
            .ok()
            .map(|ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_only_plain_digits() {
        assert_eq!(parse_timestamp(b"0"), Some(0));
        assert_eq!(parse_timestamp(b"1614265330"), Some(1_614_265_330));
        assert_eq!(parse_timestamp(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"+123",
            b"-5",
            b"0123",
            b"00",
            b"12a",
            b"1.5",
            b" 12",
            b"12 ",
            b"9223372036854775808",
            b"-9223372036854775808",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn window_is_inclusive_both_ways_and_overflow_safe() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tol = Duration::from_secs(300);
        for (ts, ok) in [
            (1_700_000_300, true),
            (1_699_999_700, true),
            (1_700_000_301, false),
            (1_699_999_699, false),
            (i64::MAX, false),
            (0, false),
        ] {
            assert_eq!(in_window(ts, now, tol, TimestampUnit::Auto), ok, "{ts}");
        }
        assert!(in_window(1_700_000_000_000, now, tol, TimestampUnit::Auto));
        assert!(!in_window(
            1_700_000_000_000,
            now,
            tol,
            TimestampUnit::Seconds
        ));
        assert!(!in_window(1_700_000_000, now, tol, TimestampUnit::Millis));
        // Checked arithmetic: a clock before the epoch minus i64::MAX overflows, and is a "no".
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1_000);
        assert!(!in_window(
            i64::MAX,
            before_epoch,
            Duration::MAX,
            TimestampUnit::Millis
        ));
    }
}
