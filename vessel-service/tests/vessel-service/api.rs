//! vessel-service over gRPC, as a client sees it: the real server on a
//! random port, against a real PostgreSQL database of its own.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use shippy_proto::{
    user::v1::{User, user_service_client::UserServiceClient},
    vessel::v1::{
        ListRequest, ReleaseRequest, ReservationRef, ReserveRequest, Specification, Vessel,
        vessel_service_client::VesselServiceClient,
    },
};
use shippy_service::{
    Shutdown,
    discovery::{CallTimeouts, static_channel},
    settings::SecretUrl,
};
use shippy_testkit::{
    LateProxy, SERVICE_TOKEN, fresh_postgres_database, health_status, infra_var, init_test_logging,
    socket_addr_of, wait_for_health, with_socket_addr,
};
use tokio::task::JoinHandle;
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::{app::Application as UserApp, settings::Settings as UserSettings};
use vessel_service::{app::Application, domain::AccountQuota, settings::Settings};

const ADMIN: &str = "admin@example.com";
/// Held reservations last this long here.
const RESERVATION_TTL: Duration = Duration::from_millis(700);
const PASSWORD: &str = "correct horse battery";

/// A real user-service beside the vessel-service under test: it hands out
/// the keys vessel-service verifies tokens with, and the tokens.
struct Users {
    url: String,
    channel: Channel,
    shutdown: Shutdown,
}

impl Users {
    async fn start() -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let settings = UserSettings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: fresh_postgres_database("vessel_api_users").await,
            nats_url: infra_var("TEST_NATS_URL").parse().unwrap(),
            jwt_signing_key_file: None,
            jwt_ttl: Duration::from_secs(3600).into(),
            bcrypt_cost: 4,
            admin_emails: vec![ADMIN.into()],
            login: Default::default(),
            events_stream: format!("USERS_{unique}"),
            user_created_subject: format!("test.{unique}.user.created"),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            discovery: Default::default(),
            keys: Default::default(),
        };
        let app = UserApp::build(&settings).await.expect("user-service");
        let url = format!("http://{}", app.local_addr().unwrap());
        let shutdown = Shutdown::new();
        tokio::spawn(app.run(shutdown.clone()));
        let channel = static_channel(&url, CallTimeouts::default()).unwrap();
        wait_for_health(&channel, ServingStatus::Serving).await;
        Self {
            url,
            channel,
            shutdown,
        }
    }

    /// Creates an account for `email` and returns its token.
    async fn token(&self, email: &str) -> String {
        let mut users = UserServiceClient::new(self.channel.clone());
        let account = User {
            name: "Someone".into(),
            email: email.into(),
            password: PASSWORD.into(),
            ..Default::default()
        };
        users.create(account.clone()).await.expect("account");
        users.auth(account).await.expect("login").into_inner().token
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// `message` with `authorization: Bearer <token>`.
fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
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
    shutdown: Shutdown,
    server: JoinHandle<Result<(), shippy_service::server::ServerError>>,
}

impl TestApp {
    async fn spawn(database_url: SecretUrl) -> Self {
        Self::spawn_with(database_url, WHOLE_FLEET).await
    }

    async fn spawn_with(database_url: SecretUrl, quota: AccountQuota) -> Self {
        init_test_logging();
        let users = Users::start().await;
        let admin = users.token(ADMIN).await;
        let settings = Settings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url,
            user_service_url: users.url.clone(),
            service_token: Some(SERVICE_TOKEN.parse().unwrap()),
            reservation_ttl: RESERVATION_TTL.into(),
            reservation_sweep_interval: Duration::from_millis(100).into(),
            account_max_containers: quota.containers,
            account_max_weight: quota.weight,
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            discovery: Default::default(),
            keys: Default::default(),
        };
        let app = Application::build(&settings).await.expect("build");
        let address = app.local_addr().unwrap();
        let metrics = app.metrics_addr().unwrap();
        let shutdown = Shutdown::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        let channel =
            static_channel(&format!("http://{address}"), CallTimeouts::default()).unwrap();
        Self {
            users,
            admin,
            address,
            metrics,
            channel,
            shutdown,
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
        self.shutdown.trigger();
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
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

/// `message` with the services' shared secret.
pub(crate) fn as_service<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "x-service-token",
        MetadataValue::try_from(SERVICE_TOKEN).unwrap(),
    );
    request
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
async fn find_available_answers_the_smallest_seed_vessel_that_fits() {
    let app = TestApp::ready().await;
    // The original's sample consignment: 3 containers, 55 000 kg.
    let response = app
        .vessels()
        .find_available(spec(3, 55_000))
        .await
        .expect("found");
    let vessel = response.into_inner().vessel.expect("a vessel");
    assert_eq!(vessel.id, "vessel002");
    assert!(vessel.capacity >= 3 && vessel.max_weight >= 55_000);

    let vessel = app
        .vessels()
        .find_available(spec(300, 150_000))
        .await
        .expect("found")
        .into_inner()
        .vessel
        .unwrap();
    assert_eq!(
        (vessel.id.as_str(), vessel.name.as_str()),
        ("vessel001", "Kane's Salty Secret")
    );
    app.stop().await;
}

#[tokio::test]
async fn nothing_fits_is_not_found_naming_the_spec() {
    let app = TestApp::ready().await;
    let status = app
        .vessels()
        .find_available(spec(5000, 10))
        .await
        .expect_err("no vessel carries 5000 containers");
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("capacity >= 5000"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("max_weight >= 10"),
        "{}",
        status.message()
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_specifications_are_invalid_argument_and_the_service_keeps_serving() {
    let app = TestApp::ready().await;
    for (bad, field) in [
        (spec(0, 100), "capacity"),
        (spec(-3, 100), "capacity"),
        (spec(1, 0), "max_weight"),
        (spec(1, i32::MIN), "max_weight"),
    ] {
        let status = app
            .vessels()
            .find_available(bad)
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    app.vessels()
        .find_available(spec(1, 1))
        .await
        .expect("still serving");
    app.stop().await;
}

#[tokio::test]
async fn create_stores_the_vessel_and_find_available_can_pick_it() {
    let app = TestApp::ready().await;
    let created = app
        .vessels()
        .create(app.as_admin(new_vessel("dinghy", "Little Dinghy", 2, 50)))
        .await
        .expect("created")
        .into_inner();
    assert!(created.created);
    let vessel = created.vessel.expect("the stored vessel");
    assert_eq!(
        (
            vessel.id.as_str(),
            vessel.name.as_str(),
            vessel.capacity,
            vessel.max_weight
        ),
        ("dinghy", "Little Dinghy", 2, 50)
    );
    assert_eq!(
        vessel.available,
        Some(true),
        "available unless said otherwise"
    );

    let found = app
        .vessels()
        .find_available(spec(1, 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.vessel.unwrap().id,
        "dinghy",
        "the new vessel is the smallest fit"
    );

    // An unavailable vessel is stored but never picked.
    let busy = Vessel {
        available: Some(false),
        ..new_vessel("canoe", "Canoe", 1, 1)
    };
    app.vessels()
        .create(app.as_admin(busy))
        .await
        .expect("created");
    let found = app
        .vessels()
        .find_available(spec(1, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.vessel.unwrap().id, "dinghy");
    app.stop().await;
}

#[tokio::test]
async fn create_generates_an_id_when_none_is_given() {
    let app = TestApp::ready().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let vessel = app
            .vessels()
            .create(app.as_admin(new_vessel("", "Anonymous", 10, 10)))
            .await
            .expect("created")
            .into_inner()
            .vessel
            .unwrap();
        assert!(!vessel.id.is_empty());
        ids.push(vessel.id);
    }
    assert_ne!(ids[0], ids[1]);
    app.stop().await;
}

#[tokio::test]
async fn a_taken_id_is_already_exists_and_nothing_is_overwritten() {
    let app = TestApp::ready().await;
    let status = app
        .vessels()
        .create(app.as_admin(new_vessel("vessel001", "Impostor", 1, 1)))
        .await
        .expect_err("vessel001 is seeded");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("vessel001"),
        "{}",
        status.message()
    );
    let found = app
        .vessels()
        .find_available(spec(300, 150_000))
        .await
        .unwrap();
    assert_eq!(
        found.into_inner().vessel.unwrap().name,
        "Kane's Salty Secret"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_vessels_are_invalid_argument() {
    let app = TestApp::ready().await;
    for (bad, field) in [
        (new_vessel("", "", 1, 1), "name"),
        (new_vessel("", "   ", 1, 1), "name"),
        (new_vessel("", "Ship", 0, 1), "capacity"),
        (new_vessel("", "Ship", 1, -1), "max_weight"),
        (new_vessel(&"x".repeat(500), "Ship", 1, 1), "id"),
        (new_vessel("", "Ship\0", 1, 1), "name"),
        (new_vessel("", "Ship\r\nINFO forged", 1, 1), "name"),
        (
            new_vessel("", &format!("{}\n", "y".repeat(10_000)), 1, 1),
            "name",
        ),
        (
            Vessel {
                owner_id: "owner\0".into(),
                ..new_vessel("", "Ship", 1, 1)
            },
            "owner_id",
        ),
    ] {
        let status = app
            .vessels()
            .create(app.as_admin(bad))
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    app.vessels()
        .find_available(spec(1, 1))
        .await
        .expect("still serving");
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
    let status = app
        .vessels()
        .find_available(spec(1, 1))
        .await
        .expect_err("not ready");
    assert_eq!(status.code(), Code::Unavailable);

    proxy.start().await;
    app.wait_for(ServingStatus::Serving).await;
    app.vessels()
        .find_available(spec(1, 1))
        .await
        .expect("serving now");
    app.stop().await;
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

#[tokio::test]
async fn create_needs_an_admin_token_and_find_available_needs_none() {
    let app = TestApp::ready().await;
    let capture = new_vessel("trap", "Capture", 1, 1_000_000);

    let status = app
        .vessels()
        .create(capture.clone())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = app
        .vessels()
        .create(bearer(capture.clone(), "garbage"))
        .await
        .expect_err("garbage token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let user = app.users.token("someone@example.com").await;
    let status = app
        .vessels()
        .create(bearer(capture.clone(), &user))
        .await
        .expect_err("not an admin");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("admin"), "{}", status.message());

    // Nothing was stored: the smallest fit is still a seeded vessel.
    let found = app
        .vessels()
        .find_available(spec(1, 1))
        .await
        .expect("open to services")
        .into_inner();
    assert_ne!(found.vessel.unwrap().id, "trap");

    app.vessels()
        .create(app.as_admin(capture))
        .await
        .expect("an admin creates vessels");
    app.stop().await;
}

#[tokio::test]
async fn list_vessels_pages_the_fleet_for_any_signed_in_user() {
    use shippy_proto::vessel::v1::ListRequest;
    let app = TestApp::ready().await;
    let status = app
        .vessels()
        .list_vessels(ListRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let user = app.users.token("lister@example.com").await;
    let page = |page_size, page_token: &str| {
        bearer(
            ListRequest {
                page_size,
                page_token: page_token.into(),
            },
            &user,
        )
    };
    let first = app
        .vessels()
        .list_vessels(page(2, ""))
        .await
        .expect("a user lists the fleet")
        .into_inner();
    let ids: Vec<_> = first.vessels.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["vessel001", "vessel002"]);
    assert_eq!(first.next_page_token, "vessel002");
    let second = app
        .vessels()
        .list_vessels(page(2, &first.next_page_token))
        .await
        .expect("the next page")
        .into_inner();
    let ids: Vec<_> = second.vessels.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["vessel003"]);
    assert_eq!(second.next_page_token, "", "the last page");

    let status = app
        .vessels()
        .list_vessels(page(2, "\u{0}bad"))
        .await
        .expect_err("a forged page token");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn reservations_are_for_the_services_only() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    let anonymous = vessels.reserve(reserve("r1", 1, 1)).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::PermissionDenied, "{anonymous:?}");
    // An administrator's user token is not the services' secret.
    let admin = vessels
        .release(bearer(release("r1"), &app.admin))
        .await
        .unwrap_err();
    assert_eq!(admin.code(), Code::PermissionDenied, "{admin:?}");
    let mut forged = Request::new(reference("r1"));
    forged.metadata_mut().insert(
        "x-service-token",
        MetadataValue::try_from("x".repeat(SERVICE_TOKEN.len())).unwrap(),
    );
    let forged = vessels.confirm(forged).await.unwrap_err();
    assert_eq!(forged.code(), Code::PermissionDenied, "{forged:?}");
    assert_eq!(
        room_of(&app, "vessel002").await,
        (200, 100_000, 0, 0),
        "nothing taken"
    );
    app.stop().await;
}

#[tokio::test]
async fn reserve_confirm_and_release_move_a_vessels_room() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    let held = vessels
        .reserve(as_service(reserve("c-1", 3, 55_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.vessel_id, "vessel002");
    assert!(!held.confirmed && held.expires_at.is_some(), "{held:?}");
    assert_eq!(room_of(&app, "vessel002").await, (197, 45_000, 3, 55_000));
    // The same id again: the same reservation, nothing more taken.
    let again = vessels
        .reserve(as_service(reserve("c-1", 3, 55_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.vessel_id, "vessel002");
    assert_eq!(room_of(&app, "vessel002").await, (197, 45_000, 3, 55_000));
    let other_amounts = vessels
        .reserve(as_service(reserve("c-1", 4, 55_000)))
        .await
        .unwrap_err();
    assert_eq!(
        other_amounts.code(),
        Code::AlreadyExists,
        "{other_amounts:?}"
    );
    // FindAvailable counts what is left: vessel002 has 45 000 kg.
    let found = vessels
        .find_available(spec(1, 50_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.vessel.unwrap().id, "vessel001");

    let confirmed = vessels
        .confirm(as_service(reference("c-1")))
        .await
        .unwrap()
        .into_inner();
    assert!(confirmed.confirmed && confirmed.expires_at.is_none());
    // Confirmed room outlives the hold time.
    tokio::time::sleep(RESERVATION_TTL * 2).await;
    assert_eq!(room_of(&app, "vessel002").await, (197, 45_000, 3, 55_000));

    let released = vessels
        .release(as_service(release("c-1")))
        .await
        .unwrap()
        .into_inner();
    assert!(released.released);
    assert_eq!(room_of(&app, "vessel002").await, (200, 100_000, 0, 0));
    let twice = vessels
        .release(as_service(release("c-1")))
        .await
        .unwrap()
        .into_inner();
    assert!(!twice.released, "nothing to give back twice");
    let gone = vessels
        .confirm(as_service(reference("c-1")))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_hold_never_confirmed_gives_its_room_back_after_the_ttl() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    vessels
        .reserve(as_service(reserve("abandoned", 10, 20_000)))
        .await
        .unwrap();
    assert_eq!(room_of(&app, "vessel002").await, (190, 80_000, 10, 20_000));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while room_of(&app, "vessel002").await != (200, 100_000, 0, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the room never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = vessels
        .confirm(as_service(reference("abandoned")))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::NotFound, "{late:?}");
    app.stop().await;
}

#[tokio::test]
async fn bad_reservations_are_refused_precisely_and_no_room_is_failed_precondition() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    for (request, wanted) in [
        (reserve("", 1, 1), "reservation_id"),
        (reserve("a\nb", 1, 1), "reservation_id"),
        (reserve(&"x".repeat(10_000), 1, 1), "reservation_id"),
        (reserve("ok", 0, 1), "capacity"),
        (
            ReserveRequest {
                reservation_id: "ok".into(),
                specification: None,
                owner_id: "account-1".into(),
            },
            "specification",
        ),
        (
            ReserveRequest {
                owner_id: String::new(),
                ..reserve("ok", 1, 1)
            },
            "owner_id",
        ),
    ] {
        let error = vessels.reserve(as_service(request)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().contains(wanted), "{error:?}");
        assert!(error.message().len() < 300, "bounded: {error:?}");
    }
    let full = vessels
        .reserve(as_service(reserve("big", 1_001, 1)))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition, "{full:?}");
    assert!(full.message().contains("1001 containers"), "{full:?}");
    assert_eq!(room_of(&app, "vessel003").await, (1_000, 500_000, 0, 0));
    app.stop().await;
}

/// The per-account cap (the default: a quarter of the seed fleet): a
/// reservation that would pass it is `RESOURCE_EXHAUSTED`, with what the
/// account holds and the cap in metadata; nothing is taken; other accounts
/// still reserve.
#[tokio::test]
async fn an_account_past_its_cap_is_resource_exhausted_with_the_figures() {
    use shippy_proto::vessel::quota;

    let app = TestApp::ready_with(AccountQuota::DEFAULT).await;
    let mut vessels = app.vessels();
    vessels
        .reserve(as_service(reserve("first", 400, 150_000)))
        .await
        .unwrap();
    let refused = vessels
        .reserve(as_service(reserve("second", 26, 1)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let figure = |key: &str| {
        refused
            .metadata()
            .get(key)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        [
            figure(quota::HELD_CONTAINERS),
            figure(quota::HELD_WEIGHT),
            figure(quota::MAX_CONTAINERS),
            figure(quota::MAX_WEIGHT),
        ],
        ["400", "150000", "425", "200000"]
    );
    assert!(
        refused.message().contains("cap of 425 containers"),
        "{refused:?}"
    );
    let other = ReserveRequest {
        owner_id: "account-2".into(),
        ..reserve("other", 26, 1)
    };
    vessels.reserve(as_service(other)).await.unwrap();
    app.stop().await;
}
