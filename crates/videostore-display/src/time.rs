//! Times: dates in UTC, and how a rental's due date reads relative to now.

use prost_types::Timestamp;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// `2026-11-22`.
pub fn date(timestamp: Option<&Timestamp>) -> String {
    let Some(timestamp) = timestamp else { return "-".into() };
    let (year, month, day) = civil_from_days(timestamp.seconds.div_euclid(DAY));
    format!("{year:04}-{month:02}-{day:02}")
}

/// `2026-11-22 14:05 UTC`.
pub fn date_time(timestamp: Option<&Timestamp>) -> String {
    let Some(timestamp) = timestamp else { return "-".into() };
    let rest = timestamp.seconds.rem_euclid(DAY);
    format!("{} {:02}:{:02} UTC", date(Some(timestamp)), rest / 3600, rest % 3600 / 60)
}

/// Where an open rental stands at `now_seconds` (Unix time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueState {
    /// Due in this many whole days or more (0: due today).
    DueIn(i64),
    /// Past its due date by this many started days.
    Overdue(i64),
}

impl DueState {
    /// The state of a rental due at `due` seen at `now_seconds`.
    pub fn of(due: &Timestamp, now_seconds: i64) -> Self {
        let left = due.seconds - now_seconds;
        if left >= 0 { Self::DueIn(left / DAY) } else { Self::Overdue((-left + DAY - 1) / DAY) }
    }

    /// Whether the rental is late.
    pub fn is_overdue(self) -> bool {
        matches!(self, Self::Overdue(_))
    }

    /// `due today`, `due in 3 days`, `overdue by 1 day`.
    pub fn describe(self) -> String {
        match self {
            Self::DueIn(0) => "due today".into(),
            Self::DueIn(1) => "due in 1 day".into(),
            Self::DueIn(days) => format!("due in {days} days"),
            Self::Overdue(1) => "overdue by 1 day".into(),
            Self::Overdue(days) => format!("overdue by {days} days"),
        }
    }
}

/// Days since 1970-01-01 to a Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn dates_are_gregorian_utc() {
        assert_eq!(date(Some(&at(0))), "1970-01-01");
        assert_eq!(date(Some(&at(951_782_400))), "2000-02-29");
        assert_eq!(date_time(Some(&at(951_782_400 + 3_600 * 13 + 60 * 7))), "2000-02-29 13:07 UTC");
        assert_eq!(date(None), "-");
    }

    #[test]
    fn due_dates_read_relative_to_now() {
        let due = at(10 * DAY);
        assert_eq!(DueState::of(&due, 7 * DAY).describe(), "due in 3 days");
        assert_eq!(DueState::of(&due, 10 * DAY - 5).describe(), "due today");
        assert_eq!(DueState::of(&due, 10 * DAY), DueState::DueIn(0));
        assert_eq!(DueState::of(&due, 10 * DAY + 1).describe(), "overdue by 1 day");
        assert_eq!(DueState::of(&due, 12 * DAY + 1).describe(), "overdue by 3 days");
        assert!(DueState::of(&due, 11 * DAY).is_overdue());
    }
}
