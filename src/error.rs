//! The crate's public error type: a small semantic enum with the context a user needs to act
//! (system, stream, redacted URL, status, first bytes of the body) and the one retry decision,
//! [`Error::is_transient`].

use std::time::Duration;

/// An underlying error kept as the source of ours.
///
/// Where a variant keeps one, its message also ends with the cause's text: errors are shown
/// and stored as one line in many places (run notes, job reasons, logs), and that line must
/// say what went wrong. `source` keeps the typed cause for callers that inspect it; `mlc`'s
/// error printer does not repeat a cause its message already shows.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and its causes on one line, `: `-separated, without repeating a cause whose text a
/// message before it already shows (ml-connector's errors keep their cause and quote it; some
/// clients' own messages stop short of it, as rust-postgres's "db error").
pub fn in_words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ml-connector, grouped by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `mlc.toml` or a command-line value is wrong; the message names the key and the fix.
    #[error("configuration: {message}")]
    Config {
        message: String,
        /// The error the setting caused (a TOML parse error, a refused port), when there is
        /// one: the message already names the key and quotes it.
        #[source]
        source: Option<Cause>,
    },

    /// A stream, catalog or loader file is wrong; the message names the file and the field.
    #[error("definition {path}: {message}")]
    Definition { path: String, message: String },

    /// The remote system answered with a non-success status.
    #[error("{system} {method} {url} -> HTTP {status}: {body}")]
    Http {
        system: String,
        method: String,
        /// Already redacted: never carries a secret.
        url: String,
        status: u16,
        /// The first bytes of the response body, for diagnosis.
        body: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// The remote system answered with a success status whose body says the request failed
    /// (Pipedrive's `success: false`, an OData `error` body, an ASP.NET error object): the
    /// system's response hook read it ([`crate::http::Verdict::Refuse`]); never retried, and a
    /// write is known not to have been saved.
    #[error("{system} {method} {url} -> HTTP {status} carrying an error: {reason}")]
    FailedAnswer {
        system: String,
        method: String,
        url: String,
        status: u16,
        reason: String,
    },

    /// The server asked to wait longer before a retry than the retry budget has left (a
    /// `Retry-After` of an hour): the run fails now with the server's request instead of
    /// sleeping through it; never retried.
    #[error(
        "{system} {method} {url} -> HTTP {status}: the server asks to wait {} s before a retry, more than the {} s left of the retry budget: run again later",
        asked.as_secs(),
        left.as_secs()
    )]
    RetryBudget {
        system: String,
        method: String,
        url: String,
        status: u16,
        asked: Duration,
        left: Duration,
    },

    /// The request never got an answer (DNS, connect, reset, timeout, truncated body).
    #[error("{system} {method} {url}: {message}")]
    Transport {
        system: String,
        method: String,
        url: String,
        message: String,
        /// The client's error, its URL removed (a query may carry a token).
        #[source]
        source: Option<Cause>,
    },

    /// Credentials were refused or a token could not be obtained; says what to check.
    #[error("{system}: authentication failed: {message}")]
    Auth { system: String, message: String },

    /// A Dataverse change-tracking token is too old; the caller re-snapshots.
    #[error("{stream}: the change-tracking (delta) token expired: {message}")]
    DeltaExpired { stream: String, message: String },

    /// A page could not be decoded as the system's envelope (not a record-level problem:
    /// those go to the quarantine).
    #[error("{stream}: cannot decode page: {message}")]
    Decode {
        stream: String,
        message: String,
        #[source]
        source: Option<Cause>,
    },

    /// Reading or writing the lake (object storage) failed.
    #[error("lake {path}: {source}")]
    Lake {
        path: String,
        #[source]
        source: Cause,
    },

    /// Another worker holds the lease on this unit of work (a stream run, a sink flow): it is
    /// left to that worker.
    #[error(
        "{unit} is being run by another mlc worker ({owner}); wait for it to finish (its lease expires in {expires_in_secs} s unless that worker renews it)"
    )]
    Held {
        unit: String,
        owner: String,
        expires_in_secs: u64,
    },

    /// This worker's lease on a unit of work was taken over (it ran past its expiry: paused,
    /// cut off): it stops without writing; the new owner carries the work on.
    #[error(
        "{unit}: another worker ({owner}) took this work over (lease token {token}, ours {mine}); nothing more is written here, the new owner carries it on"
    )]
    LeaseLost {
        unit: String,
        owner: String,
        token: i64,
        mine: i64,
    },

    /// The state store (SQLite or Postgres) failed.
    #[error("state store: {message}")]
    State {
        message: String,
        #[source]
        source: Option<Cause>,
    },

    /// The warehouse load or query failed.
    #[error("warehouse: {message}")]
    Warehouse {
        message: String,
        #[source]
        source: Option<Cause>,
    },

    /// The credential vault failed (wrong master key, corrupt file).
    #[error("credential vault: {message}")]
    Vault {
        message: String,
        #[source]
        source: Option<Cause>,
    },

    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A query the remote system ran for a stream failed or cannot be trusted (a Looker query
    /// task that errored, expired, timed out, or whose result exceeds the stream's row limit);
    /// never retried, the message says what to change.
    #[error("{stream}: {message}")]
    Query { stream: String, message: String },

    /// A stop the user asked for or that protects the tenant (budget spent, another run holds
    /// the stream); never retried.
    #[error("{0}")]
    Stopped(String),
}

impl Error {
    /// The one retry decision: true for failures that may succeed if the same request is sent
    /// again later (throttling, 5xx, dropped connections, truncated bodies).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { status, .. } => Self::transient_status(*status),
            Error::Transport { .. } => true,
            _ => false,
        }
    }

    /// HTTP statuses that may turn out differently later (throttling, passing server
    /// failures): part of [`Error::is_transient`], and what token requests retry.
    pub fn transient_status(status: u16) -> bool {
        matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
    }

    /// The `Retry-After` the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// HTTP status of a remote failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. }
            | Error::RetryBudget { status, .. }
            | Error::FailedAnswer { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A state-store error of our own (no underlying cause).
    pub(crate) fn state(message: impl Into<String>) -> Self {
        Error::State {
            message: message.into(),
            source: None,
        }
    }

    /// A state-store error caused by `source`, with what was being done.
    pub(crate) fn state_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::State {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// A warehouse error of our own (no underlying cause).
    pub(crate) fn warehouse(message: impl Into<String>) -> Self {
        Error::Warehouse {
            message: message.into(),
            source: None,
        }
    }

    /// A warehouse error caused by `source`, with what was being done.
    pub(crate) fn warehouse_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Warehouse {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// A configuration error; the message names the key and the fix.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration error caused by `source` (quoted after `context`, which names the key).
    pub(crate) fn config_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Config {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// A page of `stream` that cannot be decoded, for a reason of our own.
    pub(crate) fn decode(stream: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Error::Decode {
            stream: stream.to_string(),
            message: message.into(),
            source: None,
        }
    }

    /// A page of `stream` that cannot be decoded because of `source`, with what was being
    /// done.
    pub(crate) fn decode_from(
        stream: impl std::fmt::Display,
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Decode {
            stream: stream.to_string(),
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// A vault error of our own (no underlying cause).
    pub(crate) fn vault(message: impl Into<String>) -> Self {
        Error::Vault {
            message: message.into(),
            source: None,
        }
    }

    /// A vault error caused by `source`, with what was being done.
    pub(crate) fn vault_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Vault {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// A lake failure at `path`, caused by `err` (an error, or a message of our own).
    pub(crate) fn lake(path: impl std::fmt::Display, err: impl Into<Cause>) -> Self {
        Error::Lake {
            path: path.to_string(),
            source: err.into(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::State {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses() {
        let http = |status| Error::Http {
            system: "x".into(),
            method: "GET".into(),
            url: "u".into(),
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(http(429).is_transient());
        assert!(http(503).is_transient());
        assert!(!http(400).is_transient());
        assert!(!http(401).is_transient());
        assert!(!Error::config("x").is_transient());
    }
}
