//! Quota windows: calendar hours, days and months in UTC, so every replica (and Redis)
//! agrees on when a window starts without sharing a clock beyond the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, OffsetDateTime, Time};

use crate::config::{Period, Quota};
use crate::reject::QuotaUsage;

/// Where a key stands in `quota` after `used` requests of `window`, at `now`.
pub fn quota_usage(quota: &Quota, used: u64, window: Window, now: SystemTime) -> QuotaUsage {
    QuotaUsage {
        limit: quota.requests,
        remaining: quota.requests.saturating_sub(used),
        reset: window.seconds_left(now),
        window: window.length(),
    }
}

/// Milliseconds since the Unix epoch, for wall-clock instants kept in an `AtomicU64`.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One window of a quota: `[start, end)` in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The window of `per` that contains `now`.
    pub fn containing(now: SystemTime, per: Period) -> Window {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let at = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let day = at.date();
        let (start, end) = match per {
            Period::Minute => {
                // `at` is whole seconds (from a Unix timestamp): only the seconds go.
                let start = at.replace_second(0).unwrap_or(at);
                (start, start + time::Duration::MINUTE)
            }
            Period::Hour => {
                let start =
                    at.replace_time(Time::MIDNIGHT) + time::Duration::hours(at.hour().into());
                (start, start + time::Duration::HOUR)
            }
            Period::Day => {
                let start = day.midnight().assume_utc();
                (start, start + time::Duration::DAY)
            }
            Period::Month => {
                let first = day.replace_day(1).unwrap_or(day);
                let next = match first.month() {
                    time::Month::December => {
                        Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
                    }
                    month => Date::from_calendar_date(first.year(), month.next(), 1),
                }
                .unwrap_or(first);
                (first.midnight().assume_utc(), next.midnight().assume_utc())
            }
        };
        Window {
            start: start.unix_timestamp(),
            end: end.unix_timestamp(),
        }
    }

    /// Whole seconds from `now` until the window ends (at least 1: a client told to retry
    /// in 0 s would retry at once, into the same window).
    pub fn seconds_left(&self, now: SystemTime) -> u64 {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let left = (self.end as f64 - now).ceil();
        if left >= 1.0 { left as u64 } else { 1 }
    }

    pub fn length(&self) -> u64 {
        u64::try_from(self.end - self.start).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn windows_are_utc_calendar_hours_days_and_months() {
        // 2026-12-31T23:59:30Z
        let now = at(1_798_761_570);
        let minute = Window::containing(now, Period::Minute);
        assert_eq!((minute.start, minute.end), (1_798_761_540, 1_798_761_600));
        let hour = Window::containing(now, Period::Hour);
        assert_eq!((hour.start, hour.end), (1_798_758_000, 1_798_761_600));
        let day = Window::containing(now, Period::Day);
        assert_eq!((day.start, day.end), (1_798_675_200, 1_798_761_600));
        assert_eq!(day.length(), 86_400);
        let month = Window::containing(now, Period::Month);
        // December 2026 → January 2027: the year rolls over.
        assert_eq!((month.start, month.end), (1_796_083_200, 1_798_761_600));
        assert_eq!(month.seconds_left(now), 30);
        // February of a leap year has 29 days: 2028-02-10 → [2028-02-01, 2028-03-01).
        let february = Window::containing(at(1_833_753_600), Period::Month);
        assert_eq!(february.length(), 29 * 86_400);
        // The last instant of a window still waits at least a second.
        assert_eq!(hour.seconds_left(at(1_798_761_599)), 1);
    }
}
