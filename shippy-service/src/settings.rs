//! Settings shared by every binary: each a command-line flag that also reads
//! the environment variable of the same meaning, all listed by `--help`.
//!
//! Each service flattens these into its own `clap` arguments, next to the
//! settings only it has (its listen address, its database, …).

use std::{fmt, str::FromStr};

use url::Url;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Which log lines to keep, in `tracing` filter syntax (e.g. `info,sqlx=warn`).
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// How log lines look.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Where to export traces over OTLP/gRPC (e.g. Jaeger's
    /// `http://127.0.0.1:4317`). Unset: no export.
    #[arg(long = "otel-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_endpoint: Option<String>,

    /// The `service.name` of exported traces (default: the binary's name).
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
}

/// A secret given as text (a token). `Debug` shows nothing of it and it has
/// no `Display`; [`Secret::expose`] gives it to the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// A URL that may carry credentials (`postgres://user:password@host/db`).
///
/// `Debug` and `Display` hide the password, so the URL can be logged;
/// [`SecretUrl::expose`] gives the whole URL to the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// The whole URL, password included. Do not log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL's scheme, e.g. `postgres` or `mongodb`.
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// The same URL with its path replaced, e.g. to name another database.
    pub fn with_path(&self, path: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(path);
        Self(url)
    }
}

impl FromStr for SecretUrl {
    type Err = url::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Url::parse(text).map(Self)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            // Only fails for URLs that cannot have a password at all.
            let _ = shown.set_password(Some("REDACTED"));
        }
        // Credentials given as query parameters (`?password=…`, `?token=…`).
        if shown.query().is_some() {
            let pairs: Vec<(String, String)> = shown
                .query_pairs()
                .map(|(key, value)| {
                    let lower = key.to_ascii_lowercase();
                    let secret = ["pass", "secret", "token", "key", "auth", "credential"]
                        .iter()
                        .any(|word| lower.contains(word));
                    let value = if secret {
                        "REDACTED".to_owned()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// Where a service that keeps its data in PostgreSQL or MongoDB
/// (vessel-service, consignment-service) keeps it: shippy-store opens either
/// from this URL.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreUrl {
    /// The store: `postgres://user:password@host:5432/db` or
    /// `mongodb://host:27017/db`, chosen by the scheme.
    #[arg(long, env, hide_env_values = true)]
    pub database_url: SecretUrl,
}

impl From<SecretUrl> for StoreUrl {
    fn from(database_url: SecretUrl) -> Self {
        Self { database_url }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_hide_the_password() {
        let url: SecretUrl = "postgres://app:s3cret@db:5432/vessels"
            .parse()
            .expect("valid url");
        assert_eq!(url.to_string(), "postgres://app:REDACTED@db:5432/vessels");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://app:s3cret@db:5432/vessels");
        assert_eq!(url.scheme(), "postgres");
    }

    #[test]
    fn passwords_in_query_parameters_are_hidden_too() {
        let url: SecretUrl = "mongodb://db/app?authSource=admin&password=s3cret&token=t0ken&w=1"
            .parse()
            .expect("valid url");
        let shown = url.to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );
        assert!(shown.contains("w=1"), "{shown}");
        let nats: SecretUrl = "nats://app:s3cret@127.0.0.1:4222"
            .parse()
            .expect("valid url");
        assert_eq!(nats.to_string(), "nats://app:REDACTED@127.0.0.1:4222");
    }

    #[test]
    fn with_path_names_another_database() {
        let url: SecretUrl = "postgres://app@db/postgres".parse().expect("valid url");
        assert_eq!(url.with_path("/other").expose(), "postgres://app@db/other");
    }
}
