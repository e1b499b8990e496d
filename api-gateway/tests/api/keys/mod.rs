//! Signing keys rotated and revoked while everything runs (issue 26): the
//! real user-service binary on a key file or a Consul KV key, changed with
//! its own `keys` command; vessel-, consignment-service and the gateway
//! in-process with a short `KEYS_REFRESH_INTERVAL`.

mod jwks;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shippy_auth::remote::KeyRefresh;
use shippy_harness::{UNCAPPED, bearer, spawn};
use shippy_proto::{
    consignment::v1::{GetRequest, shipping_service_client::ShippingServiceClient},
    user::v1::{User, user_service_client::UserServiceClient},
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use shippy_testkit::{
    ConsulAgent, ServiceProcess, fresh_postgres_database, infra_var, wait_for_health,
    wait_until_equal,
};
use tokio::sync::RwLock;
use tonic::{Code, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::{keys::consul::KvKey, tokens};

use crate::{ADMIN, Gateway, PASSWORD, Services};

/// The verifiers' refresh in these tests.
const REFRESH: Duration = Duration::from_secs(1);
/// What the issue allows a reload of the source to take.
const RELOAD: Duration = Duration::from_secs(5);
const KV_KEY: &str = "shippy/jwt/signing-keys";

/// Where user-service's keys are, and how the `keys` command reaches them.
enum Source {
    File(std::path::PathBuf),
    Consul(Box<ConsulAgent>),
}

/// A fresh key ring file of `keys` keys, in a temporary folder of its own
/// named after `name`.
fn key_file(name: &str, keys: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shippy-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(&file, tokens::generate_pem(keys).unwrap()).unwrap();
    file
}

impl Source {
    /// The environment of user-service (and of its `keys` command, with
    /// `write` the token that may write the KV key).
    fn env(&self, write: bool) -> Vec<(&'static str, String)> {
        match self {
            Self::File(path) => vec![("JWT_SIGNING_KEY_FILE", path.display().to_string())],
            Self::Consul(consul) => {
                let token = if write {
                    consul.management_token()
                } else {
                    consul.token("user-service")
                };
                vec![
                    ("JWT_SIGNING_KEYS_CONSUL_KEY", KV_KEY.to_owned()),
                    ("CONSUL_HTTP_ADDR", consul.http_addr()),
                    ("CONSUL_HTTP_TOKEN", token.unwrap().expose().to_owned()),
                ]
            }
        }
    }
}

/// `user-service keys ARGS` against `source`; its output.
fn keys_command(source: &Source, args: &[&str]) -> String {
    let mut command = std::process::Command::new(shippy_testkit::workspace_binary("user-service"));
    command.arg("keys").args(args);
    for (name, value) in source.env(true) {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The kids `keys list` prints, the signing one first.
fn listed(source: &Source) -> Vec<String> {
    keys_command(source, &["list"])
        .lines()
        .filter_map(|line| line.split('\t').next().map(str::to_owned))
        .collect()
}

struct Keyed {
    gateway: Gateway,
    user: ServiceProcess,
    source: Source,
}

impl Keyed {
    async fn start(source: Source) -> Self {
        Self::start_with_gateway_keys(source, refresh()).await
    }

    /// The gateway refetching the keys on its own every `gateway_keys`.
    async fn start_with_gateway_keys(source: Source, gateway_keys: KeyRefresh) -> Self {
        shippy_testkit::init_test_logging();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut env = source.env(false);
        env.extend([
            (
                "DATABASE_URL",
                fresh_postgres_database("keys_users")
                    .await
                    .expose()
                    .to_owned(),
            ),
            ("NATS_URL", infra_var("TEST_NATS_URL")),
            ("BCRYPT_COST", "4".into()),
            ("ADMIN_EMAILS", ADMIN.into()),
            ("USER_EVENTS_STREAM", format!("USERS_{unique}")),
            (
                "USER_CREATED_SUBJECT",
                format!("test.{unique}.user.created"),
            ),
        ]);
        let user = ServiceProcess::start("user-service", &env).await;
        let user_addr = user.address;
        let mut shutdowns = Vec::new();
        let (vessel_addr, shutdown) = spawn::vessel_service_with(
            fresh_postgres_database("keys_vessels").await,
            user_addr,
            UNCAPPED,
            refresh(),
        )
        .await;
        shutdowns.push(shutdown);
        let (consignment_addr, shutdown) = spawn::consignment_service_at(
            fresh_postgres_database("keys_consignments").await,
            format!("http://{vessel_addr}"),
            format!("http://{user_addr}"),
            refresh(),
        )
        .await;
        shutdowns.push(shutdown);
        for address in [vessel_addr, consignment_addr] {
            wait_for_health(&spawn::channel(address), ServingStatus::Serving).await;
        }
        let services = Services {
            user_addr,
            vessel_addr,
            consignment_addr,
            shutdowns,
            _cluster: None,
        };
        let mut settings = services.settings();
        settings.keys = gateway_keys;
        let gateway = Gateway::start_with(services, settings).await;
        Self {
            gateway,
            user,
            source,
        }
    }

    fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(spawn::channel(self.user.address))
    }

    /// A token for `email` straight from user-service.
    async fn login(&self, email: &str) -> String {
        shippy_harness::login(spawn::channel(self.user.address), email).await
    }

    /// consignment-service's answer to `token`.
    /// Asserts `token` verifies everywhere: consignment-service takes it,
    /// vessel-service's admin-only `Create` refuses it as a user's
    /// (PERMISSION_DENIED, not UNAUTHENTICATED), the gateway answers 200.
    async fn assert_taken_everywhere(&self, token: &str) {
        assert_eq!(self.at_consignments(token).await, Ok(()));
        assert_eq!(self.at_vessels(token).await, Code::PermissionDenied);
        assert_eq!(self.at_gateway(token).await, 200);
    }

    async fn at_consignments(&self, token: &str) -> Result<(), Code> {
        ShippingServiceClient::new(spawn::channel(self.gateway.services.consignment_addr))
            .get_consignments(bearer(GetRequest::default(), token))
            .await
            .map(drop)
            .map_err(|status| status.code())
    }

    /// vessel-service's answer to a non-admin's `Create`: PERMISSION_DENIED
    /// while the token verifies, UNAUTHENTICATED once it does not.
    async fn at_vessels(&self, token: &str) -> Code {
        let vessel = Vessel {
            name: "Nope".into(),
            capacity: 1,
            max_weight: 1,
            ..Default::default()
        };
        match VesselServiceClient::new(spawn::channel(self.gateway.services.vessel_addr))
            .create(bearer(vessel, token))
            .await
        {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        }
    }

    /// The gateway's status for `token` on a protected route.
    async fn at_gateway(&self, token: &str) -> u16 {
        self.gateway
            .get("/api/v1/consignments", Some(token))
            .await
            .status
    }

    /// Waits until the gateway's JWKS lists `expected`, in order: at most
    /// as long as the gateway keeps an answer of user-service, and a second.
    async fn assert_jwks_lists(&self, expected: &[String]) {
        let bound = jwks_fresh_for() + Duration::from_secs(1);
        wait_until_equal("what the JWKS lists", expected, bound, async || {
            let answer = self.gateway.get("/.well-known/jwks.json", None).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            answer.each("keys", "kid")
        })
        .await;
    }

    /// Waits (at most `bound`) until a new login's token names `kid`.
    async fn wait_until_signing_with(&self, email: &str, kid: &str, bound: Duration) {
        wait_until_equal(
            "the kid a new login's token names",
            kid,
            bound,
            async || shippy_auth::token_kid(&self.login(email).await).unwrap(),
        )
        .await;
    }
}

fn refresh() -> KeyRefresh {
    KeyRefresh {
        interval: REFRESH.into(),
    }
}

/// A client calling consignment-service and the gateway every few
/// milliseconds with the newest token user-service hands out.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failures: Arc<RwLock<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(keyed: &Keyed, email: &str, first: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(RwLock::new(Vec::new()));
        let token = Arc::new(RwLock::new(first));
        let mut tasks = Vec::new();
        // Fresh tokens, as clients log in again.
        {
            let (stop, token, users, email) =
                (stop.clone(), token.clone(), keyed.users(), email.to_owned());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let answer = users
                        .clone()
                        .auth(User {
                            email: email.clone(),
                            password: PASSWORD.into(),
                            ..Default::default()
                        })
                        .await;
                    if let Ok(answer) = answer {
                        *token.write().await = answer.into_inner().token;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        let shipping = spawn::channel(keyed.gateway.services.consignment_addr);
        let gateway_address = keyed.gateway.address;
        let (stop2, calls2, failures2, token2) =
            (stop.clone(), calls.clone(), failures.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            while !stop2.load(Ordering::Relaxed) {
                let token = token2.read().await.clone();
                let grpc = ShippingServiceClient::new(shipping.clone())
                    .get_consignments(bearer(GetRequest::default(), &token))
                    .await;
                if let Err(status) = grpc {
                    failures2
                        .write()
                        .await
                        .push(format!("consignment-service: {status:?}"));
                }
                let request =
                    http::Request::get(format!("http://{gateway_address}/api/v1/consignments"))
                        .header("authorization", format!("Bearer {token}"))
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                match client.request(request).await {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => failures2
                        .write()
                        .await
                        .push(format!("gateway: {}", response.status())),
                    Err(error) => failures2.write().await.push(format!("gateway: {error}")),
                }
                calls2.fetch_add(2, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
        Self {
            stop,
            calls,
            failures,
            tasks,
        }
    }

    /// Stops; (calls made, failures).
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.read().await.clone();
        (self.calls.load(Ordering::Relaxed), failures)
    }
}

/// Rotation under load (publish the next key, sign with it), then
/// revocation of the old key, for either source.
async fn rotate_under_load_then_revoke(source: Source) {
    let keyed = Keyed::start(source).await;
    let email = "rotating@example.com";
    let (_, old_token) = keyed.gateway.user(email).await;
    let old_kid = shippy_auth::token_kid(&old_token).unwrap();
    assert_eq!(listed(&keyed.source), std::slice::from_ref(&old_kid));
    keyed
        .assert_jwks_lists(std::slice::from_ref(&old_kid))
        .await;
    // The old token verifies (and is remembered) everywhere.
    keyed.assert_taken_everywhere(&old_token).await;

    let load = Load::start(&keyed, email, old_token.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Publish the next key; once verifiers have refreshed, sign with it.
    let added = keys_command(&keyed.source, &["add"]);
    let new_kid = listed(&keyed.source)[1].clone();
    assert!(added.contains(&new_kid), "{added}");
    tokio::time::sleep(REFRESH + Duration::from_secs(2)).await;
    keys_command(&keyed.source, &["rotate", "--kid", &new_kid]);
    keyed.wait_until_signing_with(email, &new_kid, RELOAD).await;
    // Keep the load on while every client moves to the new key.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (calls, failures) = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(calls > 200, "only {calls} calls made");
    // Shown with --nocapture: how many calls went through the rotation.
    eprintln!("rotation under load: {calls} calls, none failed");
    // user-service is the process started above: nothing restarted it.
    keyed
        .assert_jwks_lists(&[new_kid.clone(), old_kid.clone()])
        .await;
    let new_token = keyed.login(email).await;
    assert_eq!(shippy_auth::token_kid(&new_token).unwrap(), new_kid);
    assert_eq!(
        keyed.at_consignments(&old_token).await,
        Ok(()),
        "the old key still verifies"
    );

    // Revoke the old key: within the refresh interval plus the reload, its
    // token is refused everywhere, though it verified moments ago.
    keys_command(&keyed.source, &["revoke", "--kid", &old_kid]);
    let bound = REFRESH + RELOAD;
    let start = Instant::now();
    loop {
        let refused = (
            keyed.at_consignments(&old_token).await,
            keyed.at_vessels(&old_token).await,
            keyed.at_gateway(&old_token).await,
        );
        if refused == (Err(Code::Unauthenticated), Code::Unauthenticated, 401) {
            break;
        }
        assert!(start.elapsed() < bound, "after {bound:?}: {refused:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let me = keyed.gateway.get("/api/v1/me", Some(&old_token)).await;
    assert_eq!(me.status, 401, "{}", me.text);
    keyed
        .assert_jwks_lists(std::slice::from_ref(&new_kid))
        .await;
    // The remaining key's tokens keep working.
    keyed.assert_taken_everywhere(&new_token).await;
}

#[tokio::test]
async fn a_key_file_rotation_under_load_fails_no_request_and_a_revoked_key_stops_everywhere() {
    let file = key_file("keys", 1);
    let dir = file.parent().map(ToOwned::to_owned);
    rotate_under_load_then_revoke(Source::File(file)).await;
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn a_consul_kv_rotation_under_load_fails_no_request_and_a_revoked_key_stops_everywhere() {
    let consul = ConsulAgent::start_with_acls().await;
    KvKey::at(
        KV_KEY,
        Some(&consul.http_addr()),
        consul.management_token().as_ref(),
    )
    .unwrap()
    .write(&tokens::generate_pem(1).unwrap(), 0)
    .await
    .unwrap();
    rotate_under_load_then_revoke(Source::Consul(Box::new(consul))).await;
}

#[tokio::test]
async fn the_ops_dashboard_verifies_an_admin_while_user_service_hangs_though_none_opened_it_before()
{
    let file = key_file("ops-hung", 1);
    // The gateway's own refresh is far off: only a fetch at its start can
    // have given it the keys.
    let keyed = Keyed::start_with_gateway_keys(Source::File(file), KeyRefresh::default()).await;
    let (_, admin) = keyed.gateway.user(ADMIN).await;
    crate::signal(&keyed.user, "-STOP");
    let answer = keyed.gateway.get("/api/v1/ops", Some(&admin)).await;
    crate::signal(&keyed.user, "-CONT");
    assert_eq!(answer.status, 200, "{}", answer.text);
    let users = answer.json["upstreams"]
        .as_array()
        .and_then(|upstreams| {
            upstreams
                .iter()
                .find(|upstream| upstream["name"] == "user-service")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(users["healthy"], false, "{}", answer.text);
}

#[tokio::test]
async fn verifiers_keep_the_last_keys_while_user_service_is_down() {
    let file = key_file("down", 1);
    let dir = file.parent().map(ToOwned::to_owned);
    let keyed = Keyed::start(Source::File(file)).await;
    let (_, token) = keyed.gateway.user("down@example.com").await;
    assert_eq!(keyed.at_consignments(&token).await, Ok(()));
    let Keyed { gateway, user, .. } = keyed;
    let user_addr = user.address;
    user.stop().await;
    // Its port stays taken, so another test's user-service (with other
    // keys) cannot turn up there.
    let _down = shippy_testkit::ClosedPort::at(user_addr).expect("hold the stopped port");
    // Several refreshes fail meanwhile; the keys fetched before stay.
    tokio::time::sleep(REFRESH * 4).await;
    let answer = ShippingServiceClient::new(spawn::channel(gateway.services.consignment_addr))
        .get_consignments(bearer(GetRequest::default(), &token))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(
        gateway
            .get("/api/v1/consignments", Some(&token))
            .await
            .status,
        200
    );
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn jwks_fresh_for() -> Duration {
    api_gateway::jwks::FRESH_FOR
}
