//! Discovery through DNS, for Kubernetes and anything else that publishes
//! one name with an address per instance (a headless Service: one A record
//! per ready pod).
//!
//! HTTP/2 keeps one connection per peer, so a channel to a plain ClusterIP
//! Service pins every call to the one pod behind that connection. A channel
//! to `dns:///vessel-service.shippy.svc.cluster.local:50052` instead
//! resolves the name every [`REFRESH_EVERY`], keeps one endpoint per address
//! it returns, and balances calls across them: a new pod joins at the next
//! refresh, a pod that left is dropped from it. While the name cannot be
//! resolved the last known addresses stay (as with Consul unreachable).

use std::{
    collections::BTreeSet, fmt, future::Future, io, net::SocketAddr, pin::Pin, sync::Arc,
    time::Duration,
};

use tokio::sync::mpsc::Sender;
use tonic::transport::{Channel, channel::Change};

use super::{CallTimeouts, InvalidAddress, endpoint};
use crate::Shutdown;

/// How often a DNS target is resolved again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The scheme of a DNS target, as gRPC's naming convention spells it.
const SCHEME: &str = "dns:";

/// A `dns:///host:port` target (gRPC's naming: `dns:[//authority/]host:port`;
/// an authority, naming a particular DNS server, is not supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    host: String,
    port: u16,
}

impl DnsTarget {
    /// Whether `address` asks for DNS discovery at all (`dns:…`).
    pub fn is_dns(address: &str) -> bool {
        address.starts_with(SCHEME)
    }

    /// Parses `dns:///host:port` or `dns:host:port`; the port is required.
    pub fn parse(address: &str) -> Result<Self, InvalidAddress> {
        let invalid = || InvalidAddress {
            address: address.to_owned(),
        };
        let rest = address.strip_prefix(SCHEME).ok_or_else(invalid)?;
        let rest = match rest.strip_prefix("//") {
            // `dns:///host:port`: an empty authority.
            Some(with_authority) => with_authority.strip_prefix('/').ok_or_else(invalid)?,
            None => rest,
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().map_err(|_| invalid())?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !host_ok || port == 0 {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, as a resolver takes it.
    fn lookup(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dns:///{}", self.lookup())
    }
}

/// What a resolution returns: every address the name has now.
pub type Resolution = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Turns `host:port` into the addresses behind it. The system's resolver
/// ([`SystemResolver`]) in production; tests inject their own.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `host_port` has now.
    fn resolve(&self, host_port: String) -> Resolution;
}

/// The operating system's resolver (`getaddrinfo`, through tokio), which in
/// a pod asks the cluster's DNS.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host_port: String) -> Resolution {
        Box::pin(async move { Ok(tokio::net::lookup_host(host_port).await?.collect()) })
    }
}

/// A channel balanced across every address `target` resolves to, resolved
/// again every `every` until `shutdown`.
///
/// Must be called inside a tokio runtime.
pub fn dns_channel(
    target: DnsTarget,
    resolver: Arc<dyn Resolve>,
    every: Duration,
    timeouts: CallTimeouts,
    shutdown: &Shutdown,
) -> Channel {
    let (channel, changes) = Channel::balance_channel(16);
    tokio::spawn(follow(
        target,
        resolver,
        every,
        changes,
        timeouts,
        shutdown.clone(),
    ));
    channel
}

async fn follow(
    target: DnsTarget,
    resolver: Arc<dyn Resolve>,
    every: Duration,
    changes: Sender<Change<SocketAddr, tonic::transport::Endpoint>>,
    timeouts: CallTimeouts,
    shutdown: Shutdown,
) {
    let mut known: BTreeSet<SocketAddr> = BTreeSet::new();
    let mut failures = 0u32;
    loop {
        let resolved = tokio::select! {
            () = shutdown.wait() => return,
            resolved = resolver.resolve(target.lookup()) => resolved,
        };
        match resolved {
            Ok(addresses) => {
                failures = 0;
                let current: BTreeSet<SocketAddr> = addresses.into_iter().collect();
                if current != known {
                    for gone in known.difference(&current) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in current.difference(&known) {
                        let Ok(endpoint) = endpoint(&format!("http://{new}")) else {
                            continue;
                        };
                        let endpoint = endpoint
                            .connect_timeout(timeouts.connect)
                            .timeout(timeouts.request)
                            .tcp_nodelay(true);
                        if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    tracing::info!(%target, instances = ?current, "DNS instances changed");
                    known = current;
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(%error, %target, known = known.len(), "cannot resolve; keeping the known instances");
                }
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use tokio_stream::wrappers::TcpListenerStream;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    use super::*;

    /// A resolver whose answer the test sets: a name with any addresses.
    #[derive(Clone)]
    struct TestResolver {
        answer: Arc<Mutex<io::Result<Vec<SocketAddr>>>>,
        asked: Arc<AtomicUsize>,
    }

    impl TestResolver {
        fn new() -> Self {
            Self {
                answer: Arc::new(Mutex::new(Ok(Vec::new()))),
                asked: Arc::new(AtomicUsize::new(0)),
            }
        }

        fn answer(&self, answer: io::Result<Vec<SocketAddr>>) {
            *self.answer.lock().unwrap() = answer;
        }

        /// Waits until the resolver has been asked twice more, so the last
        /// answer has been applied.
        async fn applied(&self) {
            let start = self.asked.load(Ordering::SeqCst);
            while self.asked.load(Ordering::SeqCst) < start + 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    impl Resolve for TestResolver {
        fn resolve(&self, host_port: String) -> Resolution {
            assert_eq!(host_port, "vessel-service.shippy.svc.cluster.local:50052");
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = match &*self.answer.lock().unwrap() {
                Ok(addresses) => Ok(addresses.clone()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            Box::pin(async move { answer })
        }
    }

    /// A gRPC server (the standard health service) on its own loopback
    /// port, counting the calls it answers.
    struct Instance {
        address: SocketAddr,
        calls: Arc<AtomicUsize>,
        shutdown: Shutdown,
    }

    impl Instance {
        async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            let counted = calls.clone();
            let (_reporter, health) = tonic_health::server::health_reporter();
            let shutdown = Shutdown::new();
            let stop = shutdown.clone();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .layer(tonic::service::InterceptorLayer::new(
                        move |request: tonic::Request<()>| {
                            counted.fetch_add(1, Ordering::SeqCst);
                            Ok(request)
                        },
                    ))
                    .add_service(health)
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                        stop.wait().await
                    }),
            );
            Self {
                address,
                calls,
                shutdown,
            }
        }

        fn take_calls(&self) -> usize {
            self.calls.swap(0, Ordering::SeqCst)
        }
    }

    fn target() -> DnsTarget {
        DnsTarget::parse("dns:///vessel-service.shippy.svc.cluster.local:50052").unwrap()
    }

    /// A channel to [`target`] over a [`TestResolver`] that answers the
    /// `instances`' addresses, re-resolving every 20 ms until `shutdown`.
    fn channel_to(instances: &[Instance], shutdown: &Shutdown) -> (TestResolver, Channel) {
        let resolver = TestResolver::new();
        resolver.answer(Ok(instances.iter().map(|i| i.address).collect()));
        let channel = dns_channel(
            target(),
            Arc::new(resolver.clone()),
            Duration::from_millis(20),
            CallTimeouts::default(),
            shutdown,
        );
        (resolver, channel)
    }

    async fn call(channel: &Channel, times: usize) {
        for _ in 0..times {
            HealthClient::new(channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .expect("an instance answers");
        }
    }

    #[tokio::test]
    async fn calls_spread_over_every_address_and_a_removed_one_gets_none() {
        let instances = [
            Instance::start().await,
            Instance::start().await,
            Instance::start().await,
        ];
        let shutdown = Shutdown::new();
        let (resolver, channel) = channel_to(&instances, &shutdown);

        call(&channel, 90).await;
        let spread: Vec<usize> = instances.iter().map(Instance::take_calls).collect();
        assert_eq!(spread.iter().sum::<usize>(), 90);
        assert!(
            spread.iter().all(|&calls| calls > 0),
            "every instance takes calls: {spread:?}"
        );

        // The name loses the third address (its pod went away): it gets
        // nothing more, though it still listens, and no call fails.
        resolver.answer(Ok(vec![instances[0].address, instances[1].address]));
        resolver.applied().await;
        call(&channel, 60).await;
        let spread: Vec<usize> = instances.iter().map(Instance::take_calls).collect();
        assert_eq!(spread[2], 0, "the removed instance is dropped: {spread:?}");
        assert!(spread[0] > 0 && spread[1] > 0, "{spread:?}");

        // A new address joins at the next resolution.
        resolver.answer(Ok(instances.iter().map(|i| i.address).collect()));
        resolver.applied().await;
        call(&channel, 90).await;
        assert!(
            instances[2].take_calls() > 0,
            "the returning instance takes calls"
        );
        shutdown.trigger();
    }

    #[tokio::test]
    async fn the_known_addresses_stay_while_the_name_cannot_be_resolved() {
        let instances = [Instance::start().await, Instance::start().await];
        let shutdown = Shutdown::new();
        let (resolver, channel) = channel_to(&instances, &shutdown);
        call(&channel, 10).await;

        resolver.answer(Err(io::Error::other("DNS server unreachable")));
        resolver.applied().await;
        call(&channel, 60).await;
        let spread: Vec<usize> = instances.iter().map(Instance::take_calls).collect();
        assert!(
            spread.iter().all(|&calls| calls > 0),
            "both known instances keep taking calls: {spread:?}"
        );
        for instance in &instances {
            instance.shutdown.trigger();
        }
        shutdown.trigger();
    }

    #[test]
    fn targets_parse_as_grpc_names_them() {
        let target = DnsTarget::parse("dns:///vessel-service.shippy.svc.cluster.local:50052")
            .expect("valid");
        assert_eq!(
            target.lookup(),
            "vessel-service.shippy.svc.cluster.local:50052"
        );
        assert_eq!(
            target.to_string(),
            "dns:///vessel-service.shippy.svc.cluster.local:50052"
        );
        assert_eq!(
            DnsTarget::parse("dns:localhost:1").expect("valid").lookup(),
            "localhost:1"
        );
        assert_eq!(
            DnsTarget::parse("dns:///[::1]:50052")
                .expect("valid")
                .lookup(),
            "[::1]:50052"
        );
        for bad in [
            "dns:///vessel-service",
            "dns:///:50052",
            "dns:///host:0",
            "dns:///host:port",
            "dns://8.8.8.8/host:50052",
            "dns:///host name:1",
            "http://host:1",
        ] {
            let error = DnsTarget::parse(bad).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
        assert!(DnsTarget::is_dns("dns:///x:1"));
        assert!(!DnsTarget::is_dns("http://x:1"));
    }
}
