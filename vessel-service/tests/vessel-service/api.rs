//! vessel-service over gRPC, as a client sees it: the real server on a
//! random port, against a real PostgreSQL database of its own. Here the
//! harness ([`TestApp`]) and the server's life (health, start, stop,
//! metrics); the fleet's calls in [`vessels`], reservations in
//! [`reservations`].
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reservations;
mod vessels;

use std::{net::SocketAddr, time::Duration};

use shippy_harness::refused;
use shippy_harness::{ADMIN, create_user, login, settings, spawn};
pub(crate) use shippy_harness::{as_service, bearer};
use shippy_proto::vessel::v1::{
    ListRequest, ReleaseRequest, ReservationRef, ReserveRequest, Specification, Vessel,
    vessel_service_client::VesselServiceClient,
};
use shippy_service::settings::SecretUrl;
use shippy_testkit::{
    LateProxy, Running, fresh_postgres_database, health_status, init_test_logging, socket_addr_of,
    wait_for_health, with_socket_addr,
};
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use vessel_service::{app::Application, domain::AccountQuota};

/// Held reservations last this long here.
const RESERVATION_TTL: Duration = Duration::from_millis(700);

/// A real user-service beside the vessel-service under test: it hands out
/// the keys vessel-service verifies tokens with, and the tokens.
struct Users(spawn::Service);

impl Users {
    async fn start() -> Self {
        let settings = settings::user(fresh_postgres_database("vessel_api_users").await);
        Self(spawn::user(&settings).await.serving().await)
    }

    /// Creates an account for `email` and returns its token.
    async fn token(&self, email: &str) -> String {
        create_user(self.0.channel(), "Someone", email).await;
        login(self.0.channel(), email).await
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.0.shutdown.trigger();
    }
}

/// A cap as large as the seed fleet: one account may take all of it (what
/// these tests of the fleet's room assume); the cap has its own test.
const WHOLE_FLEET: AccountQuota = AccountQuota {
    containers: 1_700,
    weight: 800_000,
};

pub(crate) struct TestApp {
    users: Users,
    /// An administrator's token: `Create` needs it.
    admin: String,
    address: SocketAddr,
    metrics: SocketAddr,
    channel: Channel,
    server: spawn::Service,
}

impl TestApp {
    async fn spawn(database_url: SecretUrl) -> Self {
        Self::spawn_with(database_url, WHOLE_FLEET).await
    }

    async fn spawn_with(database_url: SecretUrl, quota: AccountQuota) -> Self {
        init_test_logging();
        let users = Users::start().await;
        let admin = users.token(ADMIN).await;
        let mut settings = settings::vessel(database_url, format!("http://{}", users.0.address));
        settings.reservation_ttl = RESERVATION_TTL.into();
        settings.account_max_containers = quota.containers;
        settings.account_max_weight = quota.weight;
        let app = Application::build(&settings).await.expect("build");
        let metrics = app.metrics_addr().unwrap();
        let server = Running::spawn(app.local_addr().unwrap(), |shutdown| app.run(shutdown));
        Self {
            users,
            admin,
            address: server.address,
            metrics,
            channel: server.channel(),
            server,
        }
    }

    /// A server on a fresh database, once it reports `SERVING`.
    async fn ready() -> Self {
        Self::ready_with(WHOLE_FLEET).await
    }

    /// [`TestApp::ready`] with the per-account cap `quota`.
    pub(crate) async fn ready_with(quota: AccountQuota) -> Self {
        let app = Self::spawn_with(fresh_postgres_database("vessel_api").await, quota).await;
        app.wait_for(ServingStatus::Serving).await;
        app
    }

    /// `vessel` in a request with the administrator's token.
    fn as_admin(&self, vessel: Vessel) -> Request<Vessel> {
        bearer(vessel, &self.admin)
    }

    /// The vessel `FindAvailable` picks for `capacity` containers of
    /// `max_weight` kg (one must fit).
    async fn pick(&self, capacity: i32, max_weight: i32) -> Vessel {
        self.vessels()
            .find_available(spec(capacity, max_weight))
            .await
            .expect("a vessel fits")
            .into_inner()
            .vessel
            .expect("the vessel picked")
    }

    pub(crate) fn vessels(&self) -> VesselServiceClient<Channel> {
        VesselServiceClient::new(self.channel.clone())
    }

    async fn health(&self, service: &str) -> ServingStatus {
        health_status(self.channel.clone(), service).await
    }

    async fn wait_for(&self, wanted: ServingStatus) {
        wait_for_health(&self.channel, wanted).await;
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    /// Finds room for one small consignment (the server answers: `why`
    /// says when it must), then stops.
    async fn stop_after_an_answer(self, why: &str) {
        self.vessels()
            .find_available(spec(1, 1))
            .await
            .unwrap_or_else(|status| panic!("{why}: {status:?}"));
        self.stop().await;
    }
}

fn spec(capacity: i32, max_weight: i32) -> Specification {
    Specification {
        capacity,
        max_weight,
    }
}

fn new_vessel(id: &str, name: &str, capacity: i32, max_weight: i32) -> Vessel {
    Vessel {
        id: id.into(),
        capacity,
        max_weight,
        name: name.into(),
        available: None,
        ..Default::default()
    }
}

pub(crate) fn reserve(id: &str, capacity: i32, max_weight: i32) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id.into(),
        specification: Some(spec(capacity, max_weight)),
        owner_id: "account-1".into(),
    }
}

fn release(id: &str) -> ReleaseRequest {
    ReleaseRequest {
        reservation_id: id.into(),
        only_if_held: false,
    }
}

fn reference(id: &str) -> ReservationRef {
    ReservationRef {
        reservation_id: id.into(),
    }
}

/// `(remaining capacity, remaining weight, used capacity, used weight)` of
/// vessel `id`, as `ListVessels` shows it.
pub(crate) async fn room_of(app: &TestApp, id: &str) -> (i32, i32, i32, i32) {
    let fleet = app
        .vessels()
        .list_vessels(bearer(ListRequest::default(), &app.admin))
        .await
        .unwrap()
        .into_inner()
        .vessels;
    let vessel = fleet.into_iter().find(|vessel| vessel.id == id).unwrap();
    (
        vessel.remaining_capacity,
        vessel.remaining_weight,
        vessel.used_capacity,
        vessel.used_weight,
    )
}

#[tokio::test]
async fn health_and_reflection_describe_the_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let app = TestApp::ready().await;
    assert_eq!(app.health("").await, ServingStatus::Serving);
    assert_eq!(
        app.health("shippy.vessel.v1.VesselService").await,
        ServingStatus::Serving
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "shippy.vessel.v1.VesselService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|name| name == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|name| name.contains("UserService")),
        "reflection lists only what this server serves: {names:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn restarts_seed_nothing_new() {
    let database = fresh_postgres_database("vessel_restart").await;
    for _ in 0..3 {
        let app = TestApp::spawn(database.clone()).await;
        app.wait_for(ServingStatus::Serving).await;
        app.stop().await;
    }
    let pool = sqlx::PgPool::connect(database.expose()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM vessels")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn starts_before_its_database_and_serves_once_it_answers() {
    let database = fresh_postgres_database("vessel_late").await;
    let mut proxy = LateProxy::reserve(socket_addr_of(&database));
    let app = TestApp::spawn(with_socket_addr(&database, proxy.address())).await;

    // The database is not reachable yet: the service is up but not serving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.health("").await, ServingStatus::NotServing);
    assert_eq!(
        app.health("shippy.vessel.v1.VesselService").await,
        ServingStatus::NotServing
    );
    // Not ready.
    refused(
        app.vessels().find_available(spec(1, 1)).await,
        Code::Unavailable,
        &[],
    );

    proxy.start().await;
    app.wait_for(ServingStatus::Serving).await;
    app.stop_after_an_answer("serving now").await;
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let app = TestApp::ready().await;
    let address = app.address;
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// The value of the sample `name{labels}` in Prometheus text, 0 if absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_and_errors_after_they_happen() {
    let app = TestApp::ready().await;
    let url = format!("http://{}/metrics", app.metrics);
    let requests = r#"grpc_server_requests_total{service="shippy.vessel.v1.VesselService",method="FindAvailable"}"#;
    let not_found = r#"grpc_server_errors_total{service="shippy.vessel.v1.VesselService",method="FindAvailable",code="NotFound"}"#;
    let before = shippy_testkit::http_get(&url).await.unwrap();
    assert_eq!(sample(&before, requests), 0.0);
    assert_eq!(sample(&before, not_found), 0.0);

    app.vessels()
        .find_available(spec(1, 1))
        .await
        .expect("found");
    app.vessels()
        .find_available(spec(5000, 1))
        .await
        .expect_err("none fits");

    let after = shippy_testkit::http_get(&url).await.unwrap();
    assert_eq!(sample(&after, requests), 2.0, "{after}");
    assert_eq!(sample(&after, not_found), 1.0, "{after}");
    let latency = r#"grpc_server_duration_seconds_count{service="shippy.vessel.v1.VesselService",method="FindAvailable"}"#;
    assert_eq!(sample(&after, latency), 2.0, "{after}");
    app.stop().await;
}
