use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// When and how often to try a call again. Delays grow exponentially from `base_delay` up to
/// `max_delay`, with jitter so that many clients do not retry in step; a `Retry-After` from the
/// provider replaces the computed delay, unless it asks for more than `max_retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed, or `None` if
    /// the provider asked for a longer wait than this policy accepts. `unit` is a number in [0, 1)
    /// that picks the jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        if let Some(wait) = retry_after {
            return (wait <= self.max_retry_after).then_some(wait);
        }
        let exponential = self.base_delay.saturating_mul(1 << attempt.saturating_sub(1).min(20));
        let ceiling = exponential.min(self.max_delay);
        // "Equal jitter": at least half the ceiling, so a retry is never immediate.
        Some(ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0))
    }
}

/// A jitter unit in [0, 1) from the OS's randomness; 0.5 if none is to be had.
pub(crate) fn jitter_unit() -> f64 {
    getrandom::u32().map_or(0.5, |n| f64::from(n) / (f64::from(u32::MAX) + 1.0))
}

/// `retry-after-ms` (OpenAI), else `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_jitter_and_respect_the_provider() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, None, 0.0), Some(Duration::from_millis(250)));
        assert_eq!(
            policy.delay(1, None, 0.999_999),
            Some(Duration::from_millis(500)).map(|d| d - Duration::from_nanos(250))
        );
        assert_eq!(policy.delay(3, None, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(policy.delay(30, None, 0.0), Some(Duration::from_secs(15)), "capped at max_delay");
        assert_eq!(policy.delay(1, Some(Duration::from_secs(7)), 0.3), Some(Duration::from_secs(7)));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(600)), 0.3), None, "too long a wait is refused");
    }

    #[test]
    fn retry_after_reads_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "3")]), now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "3")]), now),
            Some(Duration::from_millis(250))
        );
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        assert_eq!(retry_after(&headers(&[("retry-after", &in_ten)]), now), Some(Duration::from_secs(10)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
