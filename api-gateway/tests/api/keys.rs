//! Signing keys rotated and revoked while everything runs (issue 26): the
//! real user-service binary on a key file or a Consul KV key, changed with
//! its own `keys` command; vessel-, consignment-service and the gateway
//! in-process with a short `KEYS_REFRESH_INTERVAL`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shippy_auth::remote::KeyRefresh;
use shippy_proto::{
    consignment::v1::{GetRequest, shipping_service_client::ShippingServiceClient},
    user::v1::{User, user_service_client::UserServiceClient},
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use shippy_testkit::{
    ConsulAgent, ServiceProcess, fresh_postgres_database, infra_var, wait_for_health,
};
use tokio::sync::RwLock;
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::{keys::consul::KvKey, tokens};

use crate::{ADMIN, Gateway, PASSWORD, Services, cluster};

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
        let (vessel_addr, shutdown) = cluster::spawn_vessel_service_with(
            fresh_postgres_database("keys_vessels").await,
            user_addr,
            cluster::UNCAPPED,
            refresh(),
        )
        .await;
        shutdowns.push(shutdown);
        let (consignment_addr, shutdown) = cluster::spawn_consignment_service_at(
            fresh_postgres_database("keys_consignments").await,
            format!("http://{vessel_addr}"),
            format!("http://{user_addr}"),
            refresh(),
        )
        .await;
        shutdowns.push(shutdown);
        for address in [vessel_addr, consignment_addr] {
            wait_for_health(&cluster::channel(address), ServingStatus::Serving).await;
        }
        let services = Services {
            user_addr,
            vessel_addr,
            consignment_addr,
            shutdowns,
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
        UserServiceClient::new(cluster::channel(self.user.address))
    }

    /// A token for `email` straight from user-service.
    async fn login(&self, email: &str) -> String {
        self.users()
            .auth(User {
                email: email.into(),
                password: PASSWORD.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    /// consignment-service's answer to `token`.
    async fn at_consignments(&self, token: &str) -> Result<(), Code> {
        ShippingServiceClient::new(cluster::channel(self.gateway.services.consignment_addr))
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
        match VesselServiceClient::new(cluster::channel(self.gateway.services.vessel_addr))
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
        let start = Instant::now();
        loop {
            let answer = self.gateway.get("/.well-known/jwks.json", None).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            let kids: Vec<String> = answer.json["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| key["kid"].as_str().unwrap().to_owned())
                .collect();
            if kids == expected {
                return;
            }
            assert!(
                start.elapsed() < bound,
                "after {bound:?} the JWKS lists {kids:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `bound`) until a new login's token names `kid`.
    async fn wait_until_signing_with(&self, email: &str, kid: &str, bound: Duration) {
        let start = Instant::now();
        loop {
            let token = self.login(email).await;
            if shippy_auth::token_kid(&token).unwrap() == kid {
                return;
            }
            assert!(
                start.elapsed() < bound,
                "not signing with {kid} after {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn refresh() -> KeyRefresh {
    KeyRefresh {
        interval: REFRESH.into(),
    }
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
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
        let shipping = cluster::channel(keyed.gateway.services.consignment_addr);
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
    assert_eq!(keyed.at_consignments(&old_token).await, Ok(()));
    assert_eq!(keyed.at_vessels(&old_token).await, Code::PermissionDenied);
    assert_eq!(keyed.at_gateway(&old_token).await, 200);

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
    assert_eq!(keyed.at_consignments(&new_token).await, Ok(()));
    assert_eq!(keyed.at_vessels(&new_token).await, Code::PermissionDenied);
    assert_eq!(keyed.at_gateway(&new_token).await, 200);
}

#[tokio::test]
async fn a_key_file_rotation_under_load_fails_no_request_and_a_revoked_key_stops_everywhere() {
    let dir = std::env::temp_dir().join(format!("shippy-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(&file, tokens::generate_pem(1).unwrap()).unwrap();
    rotate_under_load_then_revoke(Source::File(file)).await;
    let _ = std::fs::remove_dir_all(dir);
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
async fn the_jwks_lists_every_key_as_an_okp_jwk_cacheable_no_longer_than_the_refresh() {
    let dir = std::env::temp_dir().join(format!("shippy-jwks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(&file, tokens::generate_pem(2).unwrap()).unwrap();
    let keyed = Keyed::start(Source::File(file)).await;
    let answer = keyed.gateway.get("/.well-known/jwks.json", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.headers["cache-control"].to_str().unwrap(),
        format!("public, max-age={}", REFRESH.as_secs())
    );
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let keys = answer.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "every key of the ring: {}", answer.text);
    for key in keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "EdDSA");
        let x = key["x"].as_str().unwrap();
        assert_eq!(x.len(), 43, "32 bytes, base64url without padding: {x}");
        assert!(!x.contains(['+', '/', '=']));
    }
    // The kids are the ring's (RFC 7638 thumbprints of the private keys'
    // public halves), in its order.
    let kids: Vec<&str> = keys
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, listed(&keyed.source));
    let token = keyed.gateway.user("jwks@example.com").await.1;
    assert_eq!(
        keys[0]["kid"].as_str().unwrap(),
        shippy_auth::token_kid(&token).unwrap(),
        "the signing key first"
    );
}

#[tokio::test]
async fn the_jwks_serves_the_last_set_while_user_service_hangs() {
    let dir = std::env::temp_dir().join(format!(
        "shippy-jwks-hung-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(&file, tokens::generate_pem(2).unwrap()).unwrap();
    let keyed = Keyed::start(Source::File(file)).await;
    let kids = |answer: &crate::Answer| -> Vec<String> {
        answer.json["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|key| key["kid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = keyed.gateway.get("/.well-known/jwks.json", None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(kids(&first).len(), 2, "{}", first.text);

    // Hung, not refusing: a call to it only ends at the gateway's timeout.
    crate::signal(&keyed.user, "-STOP");
    tokio::time::sleep(jwks_fresh_for() + Duration::from_millis(200)).await;
    let path = "/.well-known/jwks.json";
    // Past its freshness the set is served at once while a fetch (which
    // hangs) runs in the background: no request waits for user-service.
    let timeout: Duration = api_gateway::upstream::Breakers::default()
        .user_service_timeout
        .into();
    let asked = Instant::now();
    let (a, b, c) = tokio::join!(
        keyed.gateway.get(path, None),
        keyed.gateway.get(path, None),
        keyed.gateway.get(path, None)
    );
    let d = keyed.gateway.get(path, None).await;
    let took = asked.elapsed();
    crate::signal(&keyed.user, "-CONT");
    for answer in [&a, &b, &c, &d] {
        assert_eq!(
            (answer.status, kids(answer)),
            (200, kids(&first)),
            "while user-service hangs, the last set it gave: {}",
            answer.text
        );
    }
    assert!(
        took < timeout,
        "four answers took {took:?}: they waited for the hung user-service ({timeout:?} each)"
    );
}

#[tokio::test]
async fn the_ops_dashboard_verifies_an_admin_while_user_service_hangs_though_none_opened_it_before()
{
    let dir =
        std::env::temp_dir().join(format!("shippy-ops-hung-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(&file, tokens::generate_pem(1).unwrap()).unwrap();
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

fn jwks_fresh_for() -> Duration {
    api_gateway::jwks::FRESH_FOR
}

#[tokio::test]
async fn verifiers_keep_the_last_keys_while_user_service_is_down() {
    let dir = std::env::temp_dir().join(format!("shippy-down-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(&file, tokens::generate_pem(1).unwrap()).unwrap();
    let keyed = Keyed::start(Source::File(file)).await;
    let (_, token) = keyed.gateway.user("down@example.com").await;
    assert_eq!(keyed.at_consignments(&token).await, Ok(()));
    let Keyed { gateway, user, .. } = keyed;
    user.stop().await;
    // Several refreshes fail meanwhile; the keys fetched before stay.
    tokio::time::sleep(REFRESH * 4).await;
    let answer = ShippingServiceClient::new(cluster::channel(gateway.services.consignment_addr))
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
    let _ = std::fs::remove_dir_all(dir);
}
