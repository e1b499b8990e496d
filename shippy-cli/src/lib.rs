//! What the command-line programs share: one-line failures with an exit
//! code, connecting to a service, JSON output and times for people, and the
//! token `user-cli login` saves ([`saved`]); listings a page at a time
//! ([`listing`]); the flags every command takes ([`cli_args!`]).
//!
//! A crate of its own so that the CLIs link tonic's client and nothing of
//! the services' runtime (Consul, NATS, OpenTelemetry, metrics, axum).

pub mod args_macro;
pub mod listing;
pub mod saved;

use std::{process::ExitCode, time::Duration};

use tonic::{
    Code, Status,
    transport::{Channel, Endpoint},
};

/// What went wrong, as one line for the user.
#[derive(Debug)]
pub struct Failure(pub String);

impl Failure {
    /// A refused or failed call to `service` (whose address comes from
    /// `--addr` / `address_variable`), as one line for the user.
    pub fn from_status(status: &Status, service: &str, address_variable: &str) -> Self {
        // A status the client made itself (no answer came) carries the
        // transport error as its source; one the service sent does not.
        let no_answer =
            std::error::Error::source(status).is_some() || status.code() == Code::DeadlineExceeded;
        Failure(match status.code() {
            _ if no_answer => {
                format!(
                    "cannot reach {service}: {} (is it running? check --addr / {address_variable})",
                    status.message()
                )
            }
            Code::Unauthenticated => format!("{} (log in with `user-cli login`)", status.message()),
            _ => status.message().to_owned(),
        })
    }
}

/// Prints a failure as `error: …` on stderr and turns the result into the
/// process's exit code.
pub fn exit(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A lazily connecting channel to `address`, which must be `http://` or
/// `https://` with a host.
pub fn connect(address: &str) -> Result<Channel, Failure> {
    let invalid = || {
        Failure(format!(
            "`{address}` is not a valid service address: use http://host:port"
        ))
    };
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|_| invalid())?;
    let uri = endpoint.uri();
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy())
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &(impl serde::Serialize + ?Sized)) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| Failure(format!("cannot format JSON: {error}")))?;
    println!("{text}");
    Ok(())
}

/// Prints `value` as JSON when `json` (`--json`), else as `text` prints it
/// for people.
pub fn print<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T),
) -> Result<(), Failure> {
    if json {
        print_json(value)
    } else {
        text(value);
        Ok(())
    }
}

/// A protobuf time as RFC 3339 text.
pub fn rfc3339(time: Option<prost_types::Timestamp>) -> Option<String> {
    time.and_then(|time| chrono::DateTime::from_timestamp(time.seconds, 0))
        .map(|time| time.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_to_do() {
        let unreachable = Failure::from_status(
            &Status::from_error(Box::new(std::io::Error::other("tcp connect error"))),
            "user-service",
            "USER_SERVICE_URL",
        );
        assert!(
            unreachable.0.starts_with("cannot reach user-service"),
            "{}",
            unreachable.0
        );
        assert!(unreachable.0.contains("USER_SERVICE_URL"));
        // A service's own answer, even UNAVAILABLE about a peer, is passed on.
        let peer = Failure::from_status(
            &Status::unavailable("vessel-service is unreachable; retry shortly"),
            "consignment-service",
            "CONSIGNMENT_SERVICE_URL",
        );
        assert_eq!(peer.0, "vessel-service is unreachable; retry shortly");
        let refused = Failure::from_status(&Status::unauthenticated("token expired"), "x", "X");
        assert!(refused.0.contains("user-cli login"));
        assert_eq!(rfc3339(None), None);
    }

    #[test]
    fn print_uses_the_text_form_only_without_json() {
        let mut texts = 0;
        print(false, "text", |_| texts += 1).unwrap();
        print(true, "json", |_| texts += 1).unwrap();
        assert_eq!(texts, 1);
    }
}
