//! Deltek Vantagepoint OAuth2 password grant (placeholder until the Deltek source lands).
