//! Service-protection limits (requests per sliding window, concurrent requests, per client)
//! and the seeded per-request fault draws.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures::StreamExt;

use super::options::Faults;
use super::rng::SeqRng;

/// Whether the injected `expire` fault may hit a token issued at `issued`: a token in use for a
/// while, as a real expiry would, never one just issued (a refused fresh login is a different
/// failure, which the clients rightly treat as fatal).
pub fn expiry_hits(issued: Instant) -> bool {
    issued.elapsed() > Duration::from_millis(500)
}

/// Dataverse's concurrent-request limit per user.
pub const MAX_CONCURRENT: usize = 52;

/// The faults one request gets (drawn up front so the RNG advances identically per request).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Draw {
    pub expire_token: bool,
    pub throttle: bool,
    /// 500, 502 or 503.
    pub server_error: Option<u16>,
    pub slow: Option<Duration>,
    /// Fraction of the body sent before the connection is cut.
    pub reset: Option<f64>,
}

/// Per-client request windows, in-flight counts and the fault RNG.
#[derive(Debug)]
pub struct Protection {
    budget: Option<(u32, Duration)>,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    inflight: Arc<Mutex<HashMap<String, usize>>>,
    faults: Mutex<(Faults, SeqRng)>,
}

/// Holds one concurrent-request slot until dropped.
#[derive(Debug)]
pub struct Slot {
    client: String,
    inflight: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.client) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Protection {
    pub fn new(budget: Option<(u32, Duration)>, faults: Faults, seed: u64) -> Self {
        Self {
            budget,
            windows: Mutex::new(HashMap::new()),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            faults: Mutex::new((faults, SeqRng::new(seed ^ 0xFA17))),
        }
    }

    /// Counts a request against the client's sliding window. `Ok(remaining)` when admitted,
    /// `Err((limit, window))` when the budget is spent (the request is not counted).
    pub fn admit(&self, client: &str) -> Result<Option<u32>, (u32, Duration)> {
        let Some((max, window)) = self.budget else {
            return Ok(None);
        };
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let q = w.entry(client.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= max as usize {
            return Err((max, window));
        }
        q.push_back(now);
        Ok(Some(max - q.len() as u32))
    }

    /// Takes a concurrent-request slot, `None` when the client already has
    /// [`MAX_CONCURRENT`] requests in flight.
    pub fn enter(&self, client: &str) -> Option<Slot> {
        let mut m = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(client.to_string()).or_insert(0);
        if *n >= MAX_CONCURRENT {
            return None;
        }
        *n += 1;
        Some(Slot {
            client: client.to_string(),
            inflight: self.inflight.clone(),
        })
    }

    /// The request budget, for messages: (max requests, window); Dataverse's default when off.
    pub fn limits(&self) -> (u32, Duration) {
        self.budget.unwrap_or((6000, Duration::from_secs(300)))
    }

    pub fn set_faults(&self, faults: Faults) {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner).0 = faults;
    }

    /// Draws this request's faults. Always consumes the same amount of randomness, so the
    /// n-th request of a run gets the same faults whatever happened before.
    pub fn draw(&self) -> Draw {
        let mut g = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let (f, rng) = &mut *g;
        let u: [f64; 8] = std::array::from_fn(|_| rng.unit());
        Draw {
            expire_token: u[0] < f.expire_token,
            throttle: u[1] < f.throttle,
            server_error: (u[2] < f.server_error).then(|| match (u[5] * 3.0) as u32 {
                0 => 500,
                1 => 502,
                _ => 503,
            }),
            slow: (u[3] < f.slow).then(|| Duration::from_millis(200 + (u[6] * 600.0) as u64)),
            reset: (u[4] < f.reset).then(|| 0.1 + u[7] * 0.8),
        }
    }
}

/// The `reset` fault: a body that sends `frac` of `body`, pauses (so hyper flushes the status,
/// headers and the partial body), then fails, which aborts the connection mid-body.
pub fn truncated_body(mut body: Vec<u8>, frac: f64) -> Body {
    let cut = ((body.len() as f64 * frac) as usize).min(body.len().saturating_sub(1));
    body.truncate(cut);
    let head = futures::stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from(body))]);
    let cut_off = futures::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection reset mid-body",
        ))
    });
    Body::from_stream(head.chain(cut_off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_window_and_concurrency() {
        let p = Protection::new(Some((3, Duration::from_secs(60))), Faults::default(), 1);
        assert_eq!(p.admit("a"), Ok(Some(2)));
        assert_eq!(p.admit("a"), Ok(Some(1)));
        assert_eq!(p.admit("a"), Ok(Some(0)));
        assert!(p.admit("a").is_err());
        assert!(p.admit("b").is_ok());
        let slots: Vec<Slot> = (0..MAX_CONCURRENT).filter_map(|_| p.enter("a")).collect();
        assert_eq!(slots.len(), MAX_CONCURRENT);
        assert!(p.enter("a").is_none());
        drop(slots);
        assert!(p.enter("a").is_some());
    }

    #[test]
    fn draws_are_reproducible() {
        let f: Faults = "429=0.5,5xx=0.5,slow=0.5,reset=0.5,expire=0.5"
            .parse()
            .unwrap();
        let a = Protection::new(None, f, 9);
        let b = Protection::new(None, f, 9);
        for _ in 0..50 {
            assert_eq!(a.draw(), b.draw());
        }
        let all: Faults = "429=1".parse().unwrap();
        let c = Protection::new(None, all, 1);
        assert!((0..20).all(|_| c.draw().throttle));
    }
}
