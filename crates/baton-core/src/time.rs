use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. The caller reads the clock; the core only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// The civil date it falls on (UTC): year, month (1 to 12), day (1 to 31).
    pub fn date(self) -> (i32, u32, u32) {
        // Days to a civil date (Howard Hinnant's algorithm), so the core needs no date library.
        let days = self.0.div_euclid(86_400_000);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year as i32, month as u32, day as u32)
    }
}

/// `2026-12-02 14:57:17` (UTC).
impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month, day) = self.date();
        let seconds = self.0.div_euclid(1000).rem_euclid(86_400);
        let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        write!(f, "{year:04}-{month:02}-{day:02} {hours:02}:{minutes:02}:{seconds:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_reads_as_its_utc_date_and_time() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01 00:00:00");
        assert_eq!(Timestamp(1_796_222_075_555).to_string(), "2026-12-02 14:34:35");
        assert_eq!(Timestamp(951_782_400_000).date(), (2000, 2, 29));
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31 23:59:59");
    }
}
