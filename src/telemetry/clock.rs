//! The log lines' timestamps: the same RFC 3339 text as tracing-subscriber's default
//! (`2026-11-27T03:55:01.123456Z`), with the date and time of day formatted once a second per
//! thread instead of once a line.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// `YYYY-MM-DDTHH:MM:SS`
type Seconds = [u8; 19];

/// The last second a four-digit year can show (9999-12-31T23:59:59Z).
const LAST_FOUR_DIGIT_SECOND: u64 = 253_402_300_799;

/// Wall-clock time for the fmt layer: [`tracing_subscriber::fmt::time::SystemTime`]'s text, cheaper.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CachedClock;

thread_local! {
    /// The second last formatted on this thread, and its text.
    static LAST: Cell<(u64, Seconds)> = const { Cell::new((u64::MAX, [0; 19])) };
}

impl FormatTime for CachedClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let Ok(since_epoch) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            // A clock before 1970: the library's own formatting copes.
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let secs = since_epoch.as_secs();
        if secs > LAST_FOUR_DIGIT_SECOND {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        }
        let text = LAST.with(|last| {
            let (cached, text) = last.get();
            if cached == secs {
                return text;
            }
            let text = seconds_text(secs);
            last.set((secs, text));
            text
        });
        let mut line = [0u8; 27];
        line[..19].copy_from_slice(&text);
        line[19] = b'.';
        write_digits(&mut line[20..26], since_epoch.subsec_micros());
        line[26] = b'Z';
        // Only ASCII digits and separators were written.
        w.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

/// The calendar date and time of day of `secs` after the epoch (UTC), at most
/// [`LAST_FOUR_DIGIT_SECOND`].
fn seconds_text(secs: u64) -> Seconds {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00";
    write_digits(&mut text[0..4], year);
    write_digits(&mut text[5..7], month);
    write_digits(&mut text[8..10], day);
    write_digits(&mut text[11..13], (of_day / 3600) as u32);
    write_digits(&mut text[14..16], (of_day / 60 % 60) as u32);
    write_digits(&mut text[17..19], (of_day % 60) as u32);
    text
}

/// `value` in decimal, right-aligned and zero-padded to the width of `out` (higher digits dropped).
fn write_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Year, month, day of the `days`-th day after 1970-01-01 (Howard Hinnant's `civil_from_days`, for
/// days on or after the epoch).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00"),
            (86_399, "1970-01-01T23:59:59"),
            (951_782_400, "2000-02-29T00:00:00"),
            (978_307_199, "2000-12-31T23:59:59"),
            (1_709_210_096, "2024-02-29T12:34:56"),
            (1_795_751_701, "2026-11-27T03:55:01"),
            (4_107_542_400, "2100-03-01T00:00:00"),
            (LAST_FOUR_DIGIT_SECOND, "9999-12-31T23:59:59"),
        ] {
            assert_eq!(std::str::from_utf8(&seconds_text(secs)).unwrap(), text);
        }
    }

    /// Day by day from the epoch for 150 years: the calendar agrees with counting.
    #[test]
    fn every_day_follows_the_one_before() {
        let month_days = |year: u32, month: u32| match month {
            2 if year.is_multiple_of(4)
                && (!year.is_multiple_of(100) || year.is_multiple_of(400)) =>
            {
                29
            }
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut expected = (1970, 1, 1);
        for days in 0..(150 * 366) {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (year, month, day) = expected;
            expected = if day < month_days(year, month) {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
        }
    }

    /// Now, as both clocks write it: the same text up to the second (retried across a tick).
    #[test]
    fn writes_what_the_default_clock_writes() {
        let text = |clock: &dyn FormatTime| {
            let mut out = String::new();
            clock.format_time(&mut Writer::new(&mut out)).unwrap();
            out
        };
        for _ in 0..5 {
            let ours = text(&CachedClock);
            let theirs = text(&tracing_subscriber::fmt::time::SystemTime);
            assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
            assert_eq!(ours.as_bytes()[19], b'.');
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("the clocks never agreed on the second");
    }
}
