//! The retry policy, in one place: 429/503 honour `Retry-After` (seconds or HTTP date), other
//! transient failures back off exponentially with full jitter, bounded in attempts and in total
//! time (DESIGN.md §5).

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Bounds of the retry loop.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First backoff step (before jitter).
    pub base_delay: Duration,
    /// Ceiling of one backoff step.
    pub max_delay: Duration,
    /// Ceiling of the sum of all waits, `Retry-After` included.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_total: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The backon builder for this policy; full jitter is applied in [`next_wait`].
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_total_delay(Some(self.max_total))
    }
}

/// The waits between the attempts of one request under a policy: every retry loop (API
/// requests, token requests) asks this for its next wait, so the steps, the `Retry-After`
/// rule and the budget of total waiting are the same for all.
#[derive(Debug)]
pub struct Waits {
    steps: ExponentialBackoff,
    max_total: Duration,
    waited: Duration,
}

/// Why there is no next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The policy's attempts are used up.
    Attempts,
    /// The wait (the server's `Retry-After`, or the step) is more than the budget has left.
    Budget { asked: Duration, left: Duration },
}

impl Waits {
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            steps: policy.backoff().build(),
            max_total: policy.max_total,
            waited: Duration::ZERO,
        }
    }

    /// The wait before the next attempt after a failure (`retry_after`: what the server asked
    /// for), counted against the budget.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Result<Duration, Exhausted> {
        let wait = next_wait(retry_after, self.steps.next()).ok_or(Exhausted::Attempts)?;
        let left = self.max_total.saturating_sub(self.waited);
        if wait > left {
            return Err(Exhausted::Budget { asked: wait, left });
        }
        self.waited += wait;
        Ok(wait)
    }
}

/// The wait before the next attempt: the server's `Retry-After` when it gave one (never less
/// than it asked: hammering a throttled tenant earns longer penalties), otherwise a uniformly
/// random share of the exponential step ("full jitter"). `None` when the backoff is exhausted.
fn next_wait(retry_after: Option<Duration>, step: Option<Duration>) -> Option<Duration> {
    let step = step?;
    match retry_after {
        Some(ra) => Some(ra),
        None => {
            let millis = step.as_millis() as u64;
            let jittered = if millis == 0 {
                0
            } else {
                rand::random_range(0..=millis)
            };
            Some(Duration::from_millis(jittered))
        }
    }
}

/// The `Retry-After` of a response, when it has a readable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let when: SystemTime = when.with_timezone(&chrono::Utc).into();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = chrono::DateTime::from_timestamp(1_700_000_030, 0)
            .unwrap()
            .to_rfc2822();
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn waits_honour_retry_after_and_jitter_stays_in_step() {
        let step = Some(Duration::from_millis(400));
        assert_eq!(
            next_wait(Some(Duration::from_secs(3)), step),
            Some(Duration::from_secs(3))
        );
        for _ in 0..100 {
            let w = next_wait(None, step).unwrap();
            assert!(w <= Duration::from_millis(400));
        }
        assert_eq!(next_wait(Some(Duration::from_secs(1)), None), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let policy = RetryPolicy {
            max_retries: 3,
            ..Default::default()
        };
        let mut b = policy.backoff().build();
        let steps: Vec<_> = std::iter::from_fn(|| b.next()).collect();
        assert_eq!(steps.len(), 3);
        assert!(steps[1] > steps[0]);
    }

    #[test]
    fn waits_stop_at_the_attempts_and_at_the_budget() {
        let policy = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_total: Duration::from_secs(5),
        };
        let mut waits = Waits::new(&policy);
        assert_eq!(
            waits.next(Some(Duration::from_secs(4))),
            Ok(Duration::from_secs(4))
        );
        assert_eq!(
            waits.next(Some(Duration::from_secs(2))),
            Err(Exhausted::Budget {
                asked: Duration::from_secs(2),
                left: Duration::from_secs(1)
            })
        );
        let mut waits = Waits::new(&policy);
        assert!(waits.next(None).is_ok());
        assert!(waits.next(None).is_ok());
        assert_eq!(waits.next(None), Err(Exhausted::Attempts));
    }
}
