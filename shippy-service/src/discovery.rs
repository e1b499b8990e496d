//! How a service finds the services it calls.
//!
//! Today: static addresses from the environment (`VESSEL_SERVICE_URL`, …),
//! the embedded default when Consul is not configured. Channels are lazy:
//! creating one never waits for the peer, and each call has a deadline, so a
//! peer that is down makes calls fail promptly with `UNAVAILABLE` or
//! `DEADLINE_EXCEEDED` instead of hanging.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// How long to wait for a connection and for each call.
#[derive(Debug, Clone, Copy)]
pub struct CallTimeouts {
    /// Establishing the TCP/HTTP2 connection.
    pub connect: Duration,
    /// Each request, end to end.
    pub request: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        }
    }
}

/// An address that is not a usable gRPC endpoint.
#[derive(Debug, thiserror::Error)]
#[error("`{address}` is not a valid service address (expected e.g. http://127.0.0.1:50052)")]
pub struct InvalidAddress {
    address: String,
}

/// Checks an address such as `http://host:port` (scheme `http` or `https`
/// and a host are required) and makes it an endpoint.
pub fn endpoint(address: &str) -> Result<Endpoint, InvalidAddress> {
    let invalid = || InvalidAddress {
        address: address.to_owned(),
    };
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|_| invalid())?;
    let uri = endpoint.uri();
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(endpoint)
}

/// A lazily connecting channel to a fixed address such as `http://host:port`.
///
/// Must be called inside a tokio runtime.
pub fn static_channel(address: &str, timeouts: CallTimeouts) -> Result<Channel, InvalidAddress> {
    Ok(endpoint(address)?
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .tcp_nodelay(true)
        .connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rejects_what_is_not_an_http_address() {
        for bad in [
            "not a uri",
            "nonsense",
            "127.0.0.1:50052",
            "ftp://host:1",
            "http://",
        ] {
            let error = static_channel(bad, CallTimeouts::default()).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
        static_channel("http://vessel-service:50052", CallTimeouts::default()).expect("valid");
    }

    #[tokio::test]
    async fn a_lazy_channel_to_nothing_fails_promptly() {
        use shippy_proto::vessel::v1::{Specification, vessel_service_client::VesselServiceClient};

        // Port 9 (discard) on loopback: nothing listens there.
        let timeouts = CallTimeouts {
            connect: Duration::from_millis(300),
            request: Duration::from_millis(500),
        };
        let channel = static_channel("http://127.0.0.1:9", timeouts).expect("valid address");
        let started = std::time::Instant::now();
        let status = VesselServiceClient::new(channel)
            .find_available(Specification {
                capacity: 1,
                max_weight: 1,
            })
            .await
            .expect_err("nothing listens");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
