//! Deltek end to end against the sandbox (placeholder, filled below).
