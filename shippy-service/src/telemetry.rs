//! Logs: the `tracing` subscriber every binary installs first.

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::settings::{LogFormat, TelemetryArgs};

/// The subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse as a filter.
    #[error("RUST_LOG / --log-filter is not a valid filter")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber is installed already.
    #[error("a tracing subscriber is installed already")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber: human-readable lines by default, one JSON
/// object per line with `LOG_FORMAT=json`, filtered by `RUST_LOG`.
pub fn init(args: &TelemetryArgs) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_filter)?;
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()?,
    }
    Ok(())
}
