//! Sandbox start-up options and the fault-injection rates (`--faults` syntax).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// How the sandbox is sized and how it misbehaves.
///
/// Everything the sandbox serves derives from `scale` and `seed`, so two sandboxes started with
/// the same options serve byte-identical pages (tokens, which are random by design, aside).
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Number of account rows; the other entity sets derive their sizes from it
    /// (contacts 2N, leads 3N/4, opportunities 3N/2, quotes 3N/4, sales orders N/2,
    /// invoices N/2, products max(20, N/50), system users max(10, N/100)).
    pub scale: u64,
    /// Seed of every generated value and of the fault draws.
    pub seed: u64,
    /// Per-request fault probabilities for Web API calls (never for tokens or admin calls).
    pub faults: Faults,
    /// Lifetime of issued access tokens (`expires_in`).
    pub token_ttl: Duration,
    /// `Retry-After` seconds sent with every 429 and 503.
    pub retry_after_secs: u64,
    /// Service-protection budget per client: at most this many requests per sliding window
    /// (Dataverse: 6000 per 300 s). `None` disables it.
    pub budget: Option<(u32, Duration)>,
    /// Which tenant every fake plays (its schema, custom fields and quirks).
    pub tenant: Tenant,
}

/// The tenant the sandbox plays (DESIGN.md §12). Each fake defines its own schema from
/// `shared/reference` and the official specs, never from mlc's `catalog/`; the variants differ
/// the way real tenants do, so a test can fail when mlc's assumptions are wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tenant {
    /// A typical tenant of a current release: the standard schema of the references, the few
    /// custom fields a firm adds, archived records, computed fields that change without a
    /// modified time.
    #[default]
    Standard,
    /// An older or smaller tenant: standard columns the catalog reads are missing, whole
    /// entities are absent (solutions not installed, hubs not licensed), some metadata
    /// endpoints do not answer.
    Lean,
    /// A heavily customised tenant: many custom fields (one named like a standard field,
    /// non-Latin names), and fields whose JSON type drifts between records.
    Custom,
}

impl Tenant {
    pub const ALL: [Tenant; 3] = [Tenant::Standard, Tenant::Lean, Tenant::Custom];
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tenant::Standard => "standard",
            Tenant::Lean => "lean",
            Tenant::Custom => "custom",
        })
    }
}

impl FromStr for Tenant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Tenant::ALL
            .into_iter()
            .find(|t| t.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::config(format!("tenant `{s}`: use standard, lean or custom")))
    }
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            scale: 2000,
            seed: 42,
            faults: Faults::default(),
            token_ttl: Duration::from_secs(3599),
            retry_after_secs: 1,
            budget: Some((6000, Duration::from_secs(300))),
            tenant: Tenant::Standard,
        }
    }
}

/// Per-request fault probabilities in `0.0..=1.0`, each drawn independently per Web API call
/// from the seeded fault RNG (so a sequential run is reproducible).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// 429 with `Retry-After` (service protection, code 0x80072322).
    pub throttle: f64,
    /// 503 with `Retry-After`, or 500 / 502.
    pub server_error: f64,
    /// Status and headers sent, then the connection is cut in the middle of the body.
    pub reset: f64,
    /// The answer is delayed by 200–800 ms.
    pub slow: f64,
    /// 401 `invalid_token` as if the access token had just expired (the token is revoked).
    pub expire_token: f64,
}

impl Faults {
    /// True when no fault can fire.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }
}

/// Parses `429=0.05,5xx=0.02,reset=0.01,slow=0.01,expire=0.01` (any subset, any order;
/// `none` or an empty string means no faults). Long names (`throttle`, `server_error`,
/// `expire_token`) are accepted too.
impl FromStr for Faults {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut f = Faults::default();
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(f);
        }
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| {
                Error::config(format!(
                    "faults: `{item}` is not name=probability (e.g. 429=0.05)"
                ))
            })?;
            let p: f64 = value.trim().parse().map_err(|_| {
                Error::config(format!(
                    "faults: `{item}`: `{}` is not a number between 0 and 1",
                    value.trim()
                ))
            })?;
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(format!(
                    "faults: `{item}`: probability must be between 0 and 1"
                )));
            }
            match name.trim().to_ascii_lowercase().as_str() {
                "429" | "throttle" => f.throttle = p,
                "5xx" | "server_error" => f.server_error = p,
                "reset" => f.reset = p,
                "slow" => f.slow = p,
                "expire" | "expire_token" => f.expire_token = p,
                other => {
                    return Err(Error::config(format!(
                        "faults: unknown fault `{other}` in `{item}`; use 429, 5xx, reset, slow or expire"
                    )));
                }
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        write!(
            f,
            "429={},5xx={},reset={},slow={},expire={}",
            self.throttle, self.server_error, self.reset, self.slow, self.expire_token
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_syntax() {
        let f: Faults = "429=0.05,5xx=0.02,reset=0.01,slow=0.01,expire=0.01"
            .parse()
            .unwrap();
        assert_eq!(f.throttle, 0.05);
        assert_eq!(f.server_error, 0.02);
        assert_eq!(f.reset, 0.01);
        assert_eq!(f.slow, 0.01);
        assert_eq!(f.expire_token, 0.01);
        let g: Faults = " reset=1 ".parse().unwrap();
        assert_eq!(g.reset, 1.0);
        assert_eq!(g.throttle, 0.0);
        assert!("none".parse::<Faults>().unwrap().is_none());
        assert!("".parse::<Faults>().unwrap().is_none());
        let round: Faults = f.to_string().parse().unwrap();
        assert_eq!(round, f);
    }

    #[test]
    fn names_the_bad_item() {
        let e = "429=0.1,boom=0.2"
            .parse::<Faults>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("boom"), "{e}");
        let e = "429=lots".parse::<Faults>().unwrap_err().to_string();
        assert!(e.contains("429=lots"), "{e}");
        let e = "slow=2".parse::<Faults>().unwrap_err().to_string();
        assert!(e.contains("slow=2"), "{e}");
        let e = "slow".parse::<Faults>().unwrap_err().to_string();
        assert!(e.contains("`slow`"), "{e}");
    }
}
