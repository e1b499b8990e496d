//! `SERVICE healthcheck [ADDR]`: the binary asks its own running server for
//! `grpc.health.v1.Health` and exits 0 on `SERVING`, 1 otherwise, so a
//! container's healthcheck needs no network tool in the image.
//!
//! The address is `ADDR`, else `LISTEN_ADDR` (the variable the service
//! itself listens on); an unspecified IP (`0.0.0.0`, `[::]`) is asked on
//! loopback. It is handled before the service parses its settings, so a
//! probe needs none of them (no `DATABASE_URL`).

use std::{
    ffi::OsString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The word that selects the probe as the first argument.
pub const SUBCOMMAND: &str = "healthcheck";

/// How long one probe may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(3);

/// When the first argument is `healthcheck`, probes and exits the process
/// (0: `SERVING`; 1: anything else, with the reason on stderr); otherwise
/// returns and the service starts as usual.
pub async fn exit_if_asked() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(SUBCOMMAND)) {
        return;
    }
    let address = args
        .next()
        .or_else(|| std::env::var_os("LISTEN_ADDR"))
        .unwrap_or_default();
    let code = match probe_arg(address).await {
        Ok(()) => 0,
        Err(reason) => {
            eprintln!("unhealthy: {reason}");
            1
        }
    };
    std::process::exit(code);
}

async fn probe_arg(address: OsString) -> Result<(), String> {
    let text = address
        .into_string()
        .map_err(|_| "the address is not UTF-8".to_owned())?;
    if text.is_empty() {
        return Err(
            "no address: give one (`healthcheck 127.0.0.1:50051`) or set LISTEN_ADDR".into(),
        );
    }
    let address: SocketAddr = text
        .parse()
        .map_err(|_| format!("\"{}\" is not an IP:port address", text.escape_debug()))?;
    probe(address).await
}

/// Asks `address` (unspecified IPs become loopback) for the whole server's
/// health; `Ok` only for `SERVING`.
pub async fn probe(address: SocketAddr) -> Result<(), String> {
    let address = on_loopback_if_unspecified(address);
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| error.to_string())?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| {
            format!(
                "{address} answered {:?}: {}",
                status.code(),
                status.message()
            )
        })?
        .into_inner();
    match answer.status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("{address} is {}", other.as_str_name())),
    }
}

fn on_loopback_if_unspecified(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), address.port())
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::{Shutdown, metrics::Metrics, server::GrpcServer};

    #[tokio::test]
    async fn serving_passes_not_serving_and_silence_fail() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = GrpcServer::new(tonic_health::pb::FILE_DESCRIPTOR_SET, Metrics::new());
        let health = server.health();
        let shutdown = Shutdown::new();
        let serving = tokio::spawn(server.serve(listener, shutdown.clone()));

        health.set(&[], false).await;
        let error = probe(address).await.unwrap_err();
        assert!(error.contains("NOT_SERVING"), "{error}");

        health.set(&[], true).await;
        probe(address).await.expect("SERVING passes");
        // 0.0.0.0 is asked on loopback.
        probe(SocketAddr::new(
            Ipv4Addr::UNSPECIFIED.into(),
            address.port(),
        ))
        .await
        .expect("unspecified means loopback");

        shutdown.trigger();
        serving.await.unwrap().unwrap();
        let error = probe(address).await.unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
    }

    #[tokio::test]
    async fn a_bad_or_missing_address_is_named() {
        let error = probe_arg(OsString::new()).await.unwrap_err();
        assert!(error.contains("LISTEN_ADDR"), "{error}");
        let error = probe_arg("db:5432\n".into()).await.unwrap_err();
        assert!(error.contains(r"db:5432\n"), "{error}");
    }
}
