//! How a service finds the services it calls, and how others find it.
//!
//! With `CONSUL_HTTP_ADDR` set, [`Discovery`] registers this instance with
//! the Consul agent (a gRPC health check Consul runs itself, deregistered on
//! shutdown, re-registered every 30 s in case the agent lost it) and gives
//! channels that balance across the passing instances of a service,
//! following changes with blocking queries and keeping the last known set
//! while Consul is unreachable. Without it, static addresses from the
//! environment (`VESSEL_SERVICE_URL`, …) serve. A peer address of the form
//! `dns:///host:port` is followed through DNS instead ([`dns`]): every
//! address the name resolves to is an instance (a Kubernetes headless
//! Service), whether or not Consul is configured.
//!
//! Channels are lazy: creating one never waits for the peer, and each call
//! has a deadline, so a peer that is down makes calls fail promptly instead
//! of hanging.

pub mod consul;
pub mod dns;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Duration,
};

use tokio::{sync::mpsc::Sender, task::JoinHandle};
use tonic::transport::{Channel, Endpoint, channel::Change};

use self::consul::{Check, ConsulClient, ConsulError, Instances, Registration};
use crate::Shutdown;

/// How long a blocking query waits for a change.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// How often a registered instance registers again (in case the agent lost it).
const REREGISTER_EVERY: Duration = Duration::from_secs(30);
/// The longest pause between attempts to reach Consul.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Discovery settings, shared by every service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiscoveryArgs {
    /// The Consul agent (`127.0.0.1:8500`). Unset: no registration, and
    /// peers at their static addresses.
    #[arg(long, env = "CONSUL_HTTP_ADDR")]
    pub consul_http_addr: Option<String>,

    /// The address peers should dial, registered in Consul (`host:port` or
    /// `host`). Default: the listen address, or this machine's host name when
    /// listening on all interfaces.
    #[arg(long, env = "ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// The Consul ACL token sent with every request to the agent (Consul's
    /// own variable). Unset: none.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_http_token: Option<crate::settings::Secret>,
}

/// Static addresses or Consul, as configured.
#[derive(Debug, Clone)]
pub struct Discovery {
    consul: Option<ConsulClient>,
    advertise: Option<String>,
}

impl Discovery {
    /// Discovery as `args` configure it.
    pub fn new(args: &DiscoveryArgs) -> Self {
        Self {
            consul: args
                .consul_http_addr
                .as_deref()
                .map(|address| ConsulClient::new(address, args.consul_http_token.as_ref())),
            advertise: args.advertise_addr.clone(),
        }
    }

    /// A channel to `service`: balanced across the addresses a
    /// `dns:///host:port` `static_url` resolves to; otherwise across its
    /// passing instances in Consul, or to `static_url` without Consul.
    pub fn channel(
        &self,
        service: &'static str,
        static_url: &str,
        timeouts: CallTimeouts,
        shutdown: &Shutdown,
    ) -> Result<Channel, InvalidAddress> {
        if dns::DnsTarget::is_dns(static_url) {
            let target = dns::DnsTarget::parse(static_url)?;
            tracing::info!(service, %target, "following the instances DNS names");
            return Ok(dns::dns_channel(
                target,
                std::sync::Arc::new(dns::SystemResolver),
                dns::REFRESH_EVERY,
                timeouts,
                shutdown,
            ));
        }
        let Some(consul) = &self.consul else {
            return static_channel(static_url, timeouts);
        };
        let (channel, changes) = Channel::balance_channel(16);
        tokio::spawn(follow(
            consul.clone(),
            service,
            changes,
            timeouts,
            shutdown.clone(),
        ));
        Ok(channel)
    }

    /// Keeps this instance (`name`, serving gRPC on `listening`) registered
    /// until `shutdown` fires, then deregisters it. Nothing to do without Consul.
    pub fn register(
        &self,
        name: &'static str,
        listening: SocketAddr,
        shutdown: Shutdown,
    ) -> Option<JoinHandle<()>> {
        self.register_checked(name, listening, shutdown, |host, port| {
            (Some(format!("{host}:{port}")), None)
        })
    }

    /// Like [`Self::register`], for an HTTP service: Consul checks it with a
    /// GET of `health_path` (e.g. `/healthz`).
    pub fn register_http(
        &self,
        name: &'static str,
        listening: SocketAddr,
        health_path: &str,
        shutdown: Shutdown,
    ) -> Option<JoinHandle<()>> {
        self.register_checked(name, listening, shutdown, |host, port| {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            (None, Some(format!("http://{host}:{port}{health_path}")))
        })
    }

    fn register_checked(
        &self,
        name: &'static str,
        listening: SocketAddr,
        shutdown: Shutdown,
        check: impl FnOnce(&str, u16) -> (Option<String>, Option<String>),
    ) -> Option<JoinHandle<()>> {
        let consul = self.consul.clone()?;
        let (host, port) = advertised(listening, self.advertise.as_deref());
        let (grpc, http) = check(&host, port);
        let version = env!("CARGO_PKG_VERSION");
        let registration = Registration {
            id: service_id(name, &host, port),
            name: name.to_owned(),
            address: host.clone(),
            port,
            tags: vec![format!("version={version}")],
            meta: HashMap::from([("version".to_owned(), version.to_owned())]),
            check: Check {
                grpc,
                http,
                grpc_use_tls: false,
                interval: "2s".into(),
                timeout: "1s".into(),
                deregister_critical_service_after: "1m".into(),
            },
        };
        Some(tokio::spawn(keep_registered(
            consul,
            registration,
            shutdown,
        )))
    }
}

/// The Consul service id of `name` at `host:port`: one per address, so an
/// instance restarted on the address of one that died without deregistering
/// (kill -9, a crash) replaces that registration instead of adding a second
/// one (which would pass its check too: the new instance answers it).
/// Characters other than ASCII letters, digits, `.`, `-` and `_` (an IPv6
/// host's `:`) become `_`, so the id is safe in a URL path.
fn service_id(name: &str, host: &str, port: u16) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}-{host}-{port}")
}

/// The host and port peers should dial.
fn advertised(listening: SocketAddr, advertise: Option<&str>) -> (String, u16) {
    if let Some(advertise) = advertise.map(str::trim).filter(|a| !a.is_empty()) {
        if let Some((host, port)) = advertise.rsplit_once(':')
            && let Ok(port) = port.parse()
            && !host.ends_with(':')
        {
            return (host.trim_matches(['[', ']']).to_owned(), port);
        }
        return (advertise.to_owned(), listening.port());
    }
    let host = if listening.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    } else {
        listening.ip().to_string()
    };
    (host, listening.port())
}

fn backoff(failures: u32) -> Duration {
    crate::retry::Backoff {
        min: Duration::from_millis(200),
        max: MAX_BACKOFF,
    }
    .after(failures, true)
}

async fn keep_registered(consul: ConsulClient, registration: Registration, shutdown: Shutdown) {
    let mut registered = false;
    let mut failures = 0;
    loop {
        match consul.register(&registration).await {
            Ok(()) => {
                if !registered {
                    tracing::info!(
                        consul = consul.address(),
                        service.id = %registration.id,
                        address = %format!("{}:{}", registration.address, registration.port),
                        "registered in Consul"
                    );
                }
                registered = true;
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                // The first failure and every 20th after: a refusal that
                // lasts (a token without the right) must not flood the log.
                if failures == 1 || failures % 20 == 0 {
                    if matches!(error, ConsulError::Forbidden(_)) {
                        tracing::error!(
                            %error,
                            service = %registration.name,
                            failures,
                            "Consul refuses this instance's registration: give it a token \
                             (CONSUL_HTTP_TOKEN) whose policy has service \"{}\" write; \
                             serving anyway, retrying",
                            registration.name
                        );
                    } else {
                        tracing::warn!(%error, failures, "cannot register in Consul yet; serving anyway, retrying");
                    }
                }
            }
        }
        let pause = if failures == 0 {
            REREGISTER_EVERY
        } else {
            backoff(failures)
        };
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    match consul.deregister(&registration.id).await {
        Ok(()) => tracing::info!(service.id = %registration.id, "deregistered from Consul"),
        Err(error) => {
            tracing::warn!(%error, "cannot deregister from Consul; it removes the instance once its check fails")
        }
    }
}

/// Follows the passing instances of `service` and feeds them to a balanced
/// channel. While Consul is unreachable the known instances stay.
async fn follow(
    consul: ConsulClient,
    service: &'static str,
    changes: Sender<Change<String, Endpoint>>,
    timeouts: CallTimeouts,
    shutdown: Shutdown,
) {
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut index = None;
    let mut failures = 0;
    loop {
        let answer = tokio::select! {
            () = shutdown.wait() => return,
            answer = consul.healthy(service, index, WATCH_WAIT) => answer,
        };
        match answer {
            Ok(Instances {
                instances,
                index: new_index,
            }) => {
                failures = 0;
                // Consul's rule: an index that went backwards starts over.
                index = match index {
                    Some(old) if new_index < old => None,
                    _ => Some(new_index),
                };
                let current: BTreeMap<String, String> = instances
                    .into_iter()
                    .map(|instance| (instance.id, instance.url))
                    .collect();
                if current == known {
                    continue;
                }
                for gone in known.keys().filter(|id| !current.contains_key(*id)) {
                    if changes.send(Change::Remove(gone.clone())).await.is_err() {
                        return;
                    }
                }
                for (id, url) in &current {
                    if known.get(id) == Some(url) {
                        continue;
                    }
                    match endpoint(url) {
                        Ok(endpoint) => {
                            let endpoint = endpoint
                                .connect_timeout(timeouts.connect)
                                .timeout(timeouts.request)
                                .tcp_nodelay(true);
                            if changes
                                .send(Change::Insert(id.clone(), endpoint))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, service, "Consul lists an unusable address")
                        }
                    }
                }
                tracing::info!(service, instances = ?current.values().collect::<Vec<_>>(), "instances changed");
                known = current;
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures % 20 == 0 {
                    tracing::warn!(%error, service, known = known.len(), "Consul unreachable; keeping the known instances");
                }
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}

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
#[error(
    "`{address}` is not a valid service address (expected e.g. http://127.0.0.1:50052, or dns:///vessel-service.shippy.svc.cluster.local:50052)"
)]
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

    #[test]
    fn advertised_addresses() {
        let any: SocketAddr = "0.0.0.0:50052".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(advertised(local, None), ("127.0.0.1".into(), 41234));
        assert_eq!(
            advertised(any, Some("vessel-service")),
            ("vessel-service".into(), 50052)
        );
        assert_eq!(
            advertised(any, Some("vessel:6000")),
            ("vessel".into(), 6000)
        );
        assert_eq!(advertised(any, Some("[::1]:6000")), ("::1".into(), 6000));
        let (host, port) = advertised(any, None);
        assert!(!host.is_empty() && host != "0.0.0.0");
        assert_eq!(port, 50052);
    }

    #[test]
    fn service_ids_are_one_per_address() {
        for (name, host, port, id) in [
            (
                "vessel-service",
                "10.0.0.7",
                50052,
                "vessel-service-10.0.0.7-50052",
            ),
            (
                "vessel-service",
                "vessel-service",
                50052,
                "vessel-service-vessel-service-50052",
            ),
            ("api-gateway", "::1", 8080, "api-gateway-__1-8080"),
            ("user-service", "a/b?c", 1, "user-service-a_b_c-1"),
        ] {
            assert_eq!(service_id(name, host, port), id);
        }
        assert_ne!(
            service_id("user-service", "127.0.0.1", 1),
            service_id("user-service", "127.0.0.1", 2)
        );
    }

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
