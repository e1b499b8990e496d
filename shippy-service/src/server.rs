//! The gRPC server every shippy service runs.
//!
//! [`GrpcServer`] always serves `grpc.health.v1.Health` and server reflection
//! (v1 and v1alpha) beside the service's own RPCs, so grpcurl,
//! grpc_health_probe and Consul's gRPC check work against any of them. It
//! serves on a listener the caller bound and stops on a [`Shutdown`], so
//! tests bind port 0 and production binds the configured address.

use std::{collections::HashSet, convert::Infallible, time::Duration};

use prost::Message as _;

use http::{Request, Response};
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};
use tower_service::Service;

use crate::{
    Shutdown,
    admission::{self, AdmissionLayer, Budgets, Vouch},
    metrics::Metrics,
    readiness::{Ready, Watched},
    rpc_layer::RpcLayer,
};

/// The server could not be put together or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A descriptor set handed to reflection did not decode.
    #[error("reflection cannot read the service descriptors")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed while serving.
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// A gRPC server with health and reflection already in place.
#[derive(Debug)]
pub struct GrpcServer {
    routes: Routes,
    budgets: Budgets,
    request_timeout: Duration,
    metrics: Metrics,
    health: Health,
    descriptor_set: &'static [u8],
    services: Vec<&'static str>,
}

/// Requests a server handles at once unless told otherwise; more are shed
/// (`RESOURCE_EXHAUSTED`) rather than queued.
pub const DEFAULT_CONCURRENCY_LIMIT: usize = 256;

/// Streams one HTTP/2 connection may have open at once; a client asking for
/// more waits for its own to finish.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// The longest a request may take unless told otherwise (a client's
/// shorter `grpc-timeout` wins); then it is cancelled and answered.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The methods of the standard services, for metric labels.
const STANDARD_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The services every server has, whatever it adds.
const STANDARD_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl GrpcServer {
    /// A server whose reflection describes the services it serves, taken
    /// from `descriptor_set` (an encoded `FileDescriptorSet`, such as
    /// `shippy_proto::FILE_DESCRIPTOR_SET`), plus health and reflection.
    ///
    /// Every request gets a span and is counted and timed in `metrics`.
    pub fn new(descriptor_set: &'static [u8], metrics: Metrics) -> Self {
        let reporter = HealthReporter::new();
        let health_server = tonic_health::pb::health_server::HealthServer::new(
            HealthService::from_health_reporter(reporter.clone()),
        );
        Self {
            routes: Routes::new(health_server),
            budgets: Budgets {
                slots: DEFAULT_CONCURRENCY_LIMIT,
                per_client: admission::DEFAULT_PER_CLIENT_LIMIT,
                message_timeout: admission::DEFAULT_MESSAGE_TIMEOUT,
                max_message_bytes: admission::MAX_BUFFERED_BYTES,
                buffer_budget: admission::DEFAULT_BUFFER_BUDGET,
                vouch: None,
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            metrics,
            health: Health { reporter },
            descriptor_set,
            services: STANDARD_SERVICES.to_vec(),
        }
    }

    /// Handles at most `limit` requests at once across all connections;
    /// more are refused at once with `RESOURCE_EXHAUSTED` (load shedding)
    /// rather than queued without end. A request takes its slot only once
    /// its message has arrived (see [`admission`]).
    pub fn concurrency_limit(mut self, limit: usize) -> Self {
        self.budgets.slots = limit.max(1);
        self
    }

    /// Lets one client (address) have at most `limit` requests in flight,
    /// waiting for their message or handled; more from it are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub fn per_client_limit(mut self, limit: usize) -> Self {
        self.budgets.per_client = limit.max(1);
        self
    }

    /// Answers a unary request whose message has not arrived within
    /// `timeout` with `DEADLINE_EXCEEDED`.
    pub fn message_timeout(mut self, timeout: Duration) -> Self {
        self.budgets.message_timeout = timeout;
        self
    }

    /// Buffers request messages of at most `bytes` (the services' own
    /// decoding limit); a bigger one is refused before it is read whole.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.budgets.max_message_bytes = bytes;
        self
    }

    /// Holds at most `bytes` of request messages at once across all
    /// clients, a quarter of it per client.
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.budgets.buffer_budget = bytes;
        self
    }

    /// Believes the client address a request names in
    /// [`admission::CLIENT_ADDRESS_KEY`] when `vouch` accepts its headers
    /// (the services' shared credential): the api-gateway's calls then count
    /// against the browser's budget, not the gateway's.
    /// Without a `vouch` (no shared credential configured) no request is
    /// believed.
    pub fn trust_forwarded_client(mut self, vouch: impl Into<Option<Vouch>>) -> Self {
        self.budgets.vouch = vouch.into();
        self
    }

    /// Cancels requests still running after `timeout`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// `/package.Service/Method` of every method this server serves, and
    /// of those whose request is a single message.
    fn known_methods(&self) -> (HashSet<String>, HashSet<String>) {
        let mut known: HashSet<String> = STANDARD_METHODS.iter().map(|&m| m.to_owned()).collect();
        // Health's Check is unary too, but health is never held back.
        let mut unary = HashSet::new();
        let Ok(files) = prost_types::FileDescriptorSet::decode(self.descriptor_set) else {
            return (known, unary);
        };
        for file in &files.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                if !self.services.contains(&name.as_str()) {
                    continue;
                }
                for method in &service.method {
                    let path = format!("/{name}/{}", method.name());
                    if !method.client_streaming() {
                        unary.insert(path.clone());
                    }
                    known.insert(path);
                }
            }
        }
        (known, unary)
    }

    /// The handle that sets what `grpc.health.v1.Health` answers.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// `what` (e.g. "vessel store") as [`crate::readiness::watch`] watches it:
    /// the health of every service added so far (not health's and
    /// reflection's own), and `ready`, follow it.
    pub fn watched(&self, what: &'static str, ready: Ready) -> Watched {
        Watched {
            what,
            services: self
                .services
                .iter()
                .filter(|service| !STANDARD_SERVICES.contains(service))
                .copied()
                .collect(),
            probe_interval: Watched::PROBE_INTERVAL,
            health: self.health(),
            ready,
        }
    }

    /// Adds one of the service's own gRPC services (a generated `*Server`);
    /// reflection lists it.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Serves on `listener` until `shutdown` fires, then lets requests in
    /// flight finish and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServerError> {
        let (known, unary) = self.known_methods();
        let routes = self
            .routes
            .add_service(reflection(self.descriptor_set, &self.services).build_v1()?)
            .add_service(reflection(self.descriptor_set, &self.services).build_v1alpha()?);
        let address = listener.local_addr().ok();
        tracing::info!(?address, services = ?self.services, "gRPC server listening");
        Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            // Past the limit, requests are refused at once, not queued.
            .load_shed(true)
            .timeout(self.request_timeout)
            .layer(RpcLayer::new(self.metrics.rpc().clone(), known))
            .layer(AdmissionLayer::new(self.budgets, unary))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // No Nagle: small unary answers must not wait for the peer's
                // delayed ACK (it cost 40 ms a request before this).
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.wait_owned(),
            )
            .await?;
        tracing::info!(?address, "gRPC server stopped");
        Ok(())
    }
}

fn reflection(
    descriptor_set: &'static [u8],
    services: &[&'static str],
) -> tonic_reflection::server::Builder<'static> {
    services.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor_set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, service| builder.with_service_name(*service),
    )
}

/// Sets what `grpc.health.v1.Health` answers, for the whole server (the
/// empty service name) and for each named service together.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Answers `SERVING` (`ready`) or `NOT_SERVING` for the whole server
    /// and for each of `services` (full names such as
    /// `shippy.vessel.v1.VesselService`).
    pub async fn set(&self, services: &[&str], ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for service in services {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shippy_proto::{
        bench::v1::{
            EchoRequest, EchoResponse,
            echo_service_client::EchoServiceClient,
            echo_service_server::{EchoService, EchoServiceServer},
        },
        vessel::v1::{Specification, vessel_service_client::VesselServiceClient},
    };
    use tonic::{Code, Request, Status};

    use super::*;
    use crate::discovery::{CallTimeouts, static_channel};

    /// Answers every call after a pause, so calls overlap.
    #[derive(Debug, Clone)]
    struct Slow;

    #[tonic::async_trait]
    impl EchoService for Slow {
        async fn echo(
            &self,
            request: Request<EchoRequest>,
        ) -> Result<tonic::Response<EchoResponse>, Status> {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let payload = request.into_inner().payload;
            Ok(tonic::Response::new(EchoResponse { payload }))
        }
    }

    async fn serve(server: GrpcServer) -> (tonic::transport::Channel, Shutdown) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        tokio::spawn(server.serve(listener, shutdown.clone()));
        let channel =
            static_channel(&format!("http://{address}"), CallTimeouts::default()).unwrap();
        (channel, shutdown)
    }

    #[test]
    fn the_readiness_watch_follows_the_added_services_only() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new())
            .add_service(EchoServiceServer::new(Slow));
        let watched = server.watched("echo", Ready::new());
        assert_eq!(watched.services, ["shippy.bench.v1.EchoService"]);
    }

    #[tokio::test]
    async fn past_the_concurrency_limit_requests_are_shed_not_queued() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new())
            .concurrency_limit(1)
            .add_service(EchoServiceServer::new(Slow));
        let (channel, shutdown) = serve(server).await;
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let mut client = EchoServiceClient::new(channel.clone());
                tokio::spawn(async move { client.echo(EchoRequest::default()).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        let shed = answers
            .iter()
            .filter(
                |answer| matches!(answer, Err(status) if status.code() == Code::ResourceExhausted),
            )
            .count();
        assert!(shed >= 1, "some were shed: {answers:?}");
        assert!(
            answers.iter().any(Result::is_ok),
            "one was served: {answers:?}"
        );
        shutdown.trigger();
    }

    /// Opens a call to `Echo` that sends a message of `bytes`
    /// bytes and never ends its body; returns the code it is answered with.
    fn hold_a_message(
        channel: &tonic::transport::Channel,
        bytes: usize,
    ) -> tokio::task::JoinHandle<Code> {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        tokio::spawn(async move {
            grpc.ready().await.unwrap();
            let message = tokio_stream::StreamExt::chain(
                tokio_stream::once(vec![7u8; bytes]),
                tokio_stream::pending(),
            );
            let answer = grpc
                .client_streaming::<_, Vec<u8>, (), _>(
                    Request::new(message),
                    http::uri::PathAndQuery::from_static("/shippy.bench.v1.EchoService/Echo"),
                    tonic_prost::ProstCodec::default(),
                )
                .await;
            answer.map_or_else(|status| status.code(), |_| Code::Ok)
        })
    }

    #[tokio::test]
    async fn a_client_cannot_make_the_server_hold_more_than_its_share_of_bytes() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new())
            .buffer_budget(4 * 1024 * 1024)
            .message_timeout(Duration::from_secs(3))
            .add_service(EchoServiceServer::new(Slow));
        let (channel, shutdown) = serve(server).await;
        // A quarter of 4 MiB per client: the first 700 kB message is held,
        // the second would pass 1 MiB and is refused at once.
        let first = hold_a_message(&channel, 700_000);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = tokio::time::Instant::now();
        let second = hold_a_message(&channel, 700_000).await.unwrap();
        assert_eq!(second, Code::ResourceExhausted);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused at once"
        );
        assert_eq!(first.await.unwrap(), Code::DeadlineExceeded);
        // What it held is given back: the next one is held again.
        assert_eq!(
            hold_a_message(&channel, 700_000).await.unwrap(),
            Code::DeadlineExceeded
        );
        shutdown.trigger();
    }

    #[tokio::test]
    async fn a_message_bigger_than_the_server_takes_is_refused_before_it_is_held() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new())
            .max_message_bytes(64 * 1024)
            .add_service(EchoServiceServer::new(Slow));
        let (channel, shutdown) = serve(server).await;
        let code = hold_a_message(&channel, 100_000).await.unwrap();
        assert_eq!(code, Code::ResourceExhausted);
        shutdown.trigger();
    }

    /// Two overlapping `Echo` calls, with `headers`; how many were shed.
    async fn two_at_once(
        channel: &tonic::transport::Channel,
        headers: &[(&'static str, &'static str)],
    ) -> usize {
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let mut client = EchoServiceClient::new(channel.clone());
                let mut request = Request::new(EchoRequest::default());
                for (name, value) in headers {
                    request.metadata_mut().insert(*name, value.parse().unwrap());
                }
                tokio::spawn(async move { client.echo(request).await })
            })
            .collect();
        let mut shed = 0;
        for call in calls {
            if let Err(status) = call.await.unwrap() {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(
                    status.metadata().get(crate::error::RETRY_AFTER_SECONDS),
                    Some(&tonic::metadata::MetadataValue::from(1u32)),
                    "worth retrying in a second: {status:?}"
                );
                shed += 1;
            }
        }
        shed
    }

    #[tokio::test]
    async fn a_client_past_its_budget_is_shed_and_a_vouched_service_is_not() {
        let vouch: Vouch = std::sync::Arc::new(|headers: &http::HeaderMap| {
            headers
                .get("x-service-token")
                .is_some_and(|token| token == "right")
        });
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new())
            .per_client_limit(1)
            .trust_forwarded_client(vouch)
            .add_service(EchoServiceServer::new(Slow));
        let (channel, shutdown) = serve(server).await;
        assert_eq!(
            two_at_once(&channel, &[]).await,
            1,
            "one client, one at a time"
        );
        assert_eq!(
            two_at_once(&channel, &[("x-service-token", "wrong")]).await,
            1,
            "a wrong credential is nobody special"
        );
        assert_eq!(
            two_at_once(&channel, &[("x-service-token", "right")]).await,
            0,
            "a service calling for nobody in particular has the server's budget"
        );
        assert_eq!(
            two_at_once(
                &channel,
                &[
                    ("x-service-token", "right"),
                    (admission::CLIENT_ADDRESS_KEY, "203.0.113.5")
                ]
            )
            .await,
            1,
            "a service calling for a client: that client's budget"
        );
        shutdown.trigger();
    }

    #[tokio::test]
    async fn requests_past_the_server_timeout_are_cancelled() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new())
            .request_timeout(Duration::from_millis(100))
            .add_service(EchoServiceServer::new(Slow));
        let (channel, shutdown) = serve(server).await;
        let status = EchoServiceClient::new(channel)
            .echo(EchoRequest::default())
            .await
            .expect_err("the handler takes 500 ms");
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        shutdown.trigger();
    }

    #[tokio::test]
    async fn made_up_paths_are_counted_as_unknown() {
        let metrics = Metrics::new();
        // VesselService is described but not served: its paths are made up here.
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, metrics.clone());
        let (channel, shutdown) = serve(server).await;
        let status = VesselServiceClient::new(channel)
            .find_available(Specification::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        let text = metrics.render();
        assert!(
            text.contains(r#"grpc_server_requests_total{service="unknown",method="unknown"} 1"#),
            "{text}"
        );
        assert!(!text.contains("FindAvailable"), "{text}");
        shutdown.trigger();
    }
}
