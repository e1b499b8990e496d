//! The signing key ring followed live: the key file (rewritten atomically,
//! in place, or broken) and a Consul KV key (with ACLs, as `make dev` runs
//! it), with no restart.

use std::{path::Path, time::Duration};

use shippy_proto::user::v1::Token;
use shippy_service::settings::Secret;
use shippy_testkit::{ConsulAgent, health_status, wait_until_equal};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::{keys::consul::KvKey, tokens};

use shippy_harness::user::TestApp;

/// The reload bound the issue sets for the key file.
const RELOAD: Duration = Duration::from_secs(5);
/// Longer than one check of the file: a broken file has surely been seen.
const SEEN: Duration = Duration::from_millis(2500);
const KV_KEY: &str = "shippy/jwt/signing-keys";

fn kid_of_pem(pem: &str) -> String {
    tokens::kid_of(&tokens::parse_keys(pem, "test").unwrap()[0])
}

async fn published_kids(app: &TestApp) -> Vec<String> {
    shippy_harness::published_kids(app.channel.clone()).await
}

/// Waits (at most `bound`) until the app publishes exactly `kids`.
async fn wait_for_kids(app: &TestApp, kids: &[String], bound: Duration) {
    wait_until_equal("what the app publishes", kids, bound, async || {
        published_kids(app).await
    })
    .await;
}

async fn validate(app: &TestApp, token: &str) -> Result<(), Code> {
    app.users()
        .validate_token(Token {
            token: token.into(),
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|status| status.code())
}

fn token_kid(token: &str) -> String {
    shippy_auth::token_kid(token).unwrap()
}

/// Writes `text` to `path` as an operator should: a new file renamed over it.
fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test]
async fn a_rotated_key_file_signs_within_seconds_and_a_dropped_key_stops_verifying() {
    let app = TestApp::spawn().await;
    let email = "rotate@example.com";
    app.create_user("Rota", email).await;
    let old_token = app.login(email).await;
    let old_kid = kid_of_pem(app.key_pem.expose());
    assert_eq!(token_kid(&old_token), old_kid);
    validate(&app, &old_token)
        .await
        .expect("verifies (and is remembered)");

    // Rotate: the new key first, the old one still verifying.
    let new_pem = tokens::generate_pem(1).unwrap();
    let new_kid = kid_of_pem(&new_pem);
    write_atomically(
        &app.key_file(),
        &format!("{new_pem}{}", app.key_pem.expose()),
    );
    wait_for_kids(&app, &[new_kid.clone(), old_kid.clone()], RELOAD).await;
    let new_token = app.login(email).await;
    assert_eq!(token_kid(&new_token), new_kid, "the new key signs");
    validate(&app, &old_token)
        .await
        .expect("the old key still verifies");

    // Revoke the old key, the file changed in place (as a Kubernetes Secret's
    // mount or an editor does).
    std::fs::write(app.key_file(), &new_pem).unwrap();
    wait_for_kids(&app, std::slice::from_ref(&new_kid), RELOAD).await;
    assert_eq!(
        validate(&app, &old_token).await,
        Err(Code::Unauthenticated),
        "a dropped key's token is refused, though it verified before"
    );
    validate(&app, &new_token)
        .await
        .expect("the new key verifies");
}

#[tokio::test]
async fn a_broken_key_file_changes_nothing_and_health_stays_serving() {
    let app = TestApp::spawn().await;
    let email = "broken@example.com";
    app.create_user("Brok", email).await;
    let kids = published_kids(&app).await;
    let token = app.login(email).await;
    let file = app.key_file();
    // Garbage, an empty file, a key that is not Ed25519, an unreadable
    // path (a directory), no file at all.
    let rsa_like = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n";
    let breakages: [(&str, &dyn Fn()); 5] = [
        ("garbage", &|| {
            std::fs::write(&file, "not a key\n\u{1b}[31mred").unwrap()
        }),
        ("empty", &|| std::fs::write(&file, "").unwrap()),
        ("not Ed25519", &|| std::fs::write(&file, rsa_like).unwrap()),
        ("unreadable", &|| {
            std::fs::remove_file(&file).unwrap();
            std::fs::create_dir(&file).unwrap();
        }),
        ("deleted", &|| std::fs::remove_dir(&file).unwrap()),
    ];
    for (what, breakage) in breakages {
        breakage();
        tokio::time::sleep(SEEN).await;
        assert_eq!(published_kids(&app).await, kids, "{what}: the keys stayed");
        assert_eq!(
            token_kid(&app.login(email).await),
            kids[0],
            "{what}: the same key signs"
        );
        validate(&app, &token).await.expect("old tokens verify");
        assert_eq!(
            health_status(app.channel.clone(), "").await,
            ServingStatus::Serving,
            "{what}: still serving"
        );
    }
    // A good file again is taken.
    let next = tokens::generate_pem(1).unwrap();
    write_atomically(&file, &next);
    wait_for_kids(&app, &[kid_of_pem(&next)], RELOAD).await;
}

/// An agent with ACLs, the keys written to KV with its management token.
async fn consul_with_keys(pem: &str) -> (ConsulAgent, KvKey) {
    let consul = ConsulAgent::start_with_acls().await;
    let admin = KvKey::at(
        KV_KEY,
        Some(&consul.http_addr()),
        consul.management_token().as_ref(),
    )
    .unwrap();
    admin.write(pem, 0).await.unwrap();
    (consul, admin)
}

async fn spawn_on_kv(consul: &ConsulAgent) -> TestApp {
    let address = consul.http_addr();
    let token: Option<Secret> = consul.token("user-service");
    TestApp::spawn_custom(
        shippy_testkit::infra_var("TEST_NATS_URL"),
        move |settings| {
            settings.jwt_signing_key_file = None;
            settings.keys.consul_key = Some(KV_KEY.into());
            settings.serve.discovery.consul_http_addr = Some(address);
            settings.serve.discovery.consul_http_token = token;
        },
    )
    .await
}

/// Replaces the KV value (check-and-set on what is there).
async fn put(kv: &KvKey, text: &str) {
    let index = kv.read(None).await.map(|value| value.index).unwrap_or(0);
    kv.write(text, index).await.unwrap();
}

#[tokio::test]
async fn keys_in_consul_kv_are_followed_and_two_replicas_agree() {
    let first = tokens::generate_pem(1).unwrap();
    let (consul, kv) = consul_with_keys(&first).await;
    let one = spawn_on_kv(&consul).await;
    let two = spawn_on_kv(&consul).await;
    let first_kid = kid_of_pem(&first);
    for app in [&one, &two] {
        assert_eq!(published_kids(app).await, std::slice::from_ref(&first_kid));
    }
    let email = "kv@example.com";
    one.create_user("Kv", email).await;
    // Each replica has a database of its own here; a token of either
    // verifies at the other all the same, which needs only the keys.
    let token_one = one.login(email).await;
    validate(&two, &token_one)
        .await
        .expect("a token of one replica verifies at the other");

    // Rotate in KV: both follow, sign with the new key, publish the same set.
    let next = tokens::generate_pem(1).unwrap();
    let next_kid = kid_of_pem(&next);
    put(&kv, &format!("{next}{first}")).await;
    for app in [&one, &two] {
        wait_for_kids(app, &[next_kid.clone(), first_kid.clone()], RELOAD).await;
    }
    let token_next = one.login(email).await;
    assert_eq!(token_kid(&token_next), next_kid);
    validate(&two, &token_next)
        .await
        .expect("verifies at the other replica");
    validate(&two, &token_one)
        .await
        .expect("the old key still verifies");

    // Broken values change nothing: garbage, empty, the key deleted.
    for (what, value) in [
        ("garbage", Some("garbage\n")),
        ("empty", Some("")),
        ("deleted", None),
    ] {
        match value {
            Some(text) => put(&kv, text).await,
            None => delete(&consul, KV_KEY).await,
        }
        tokio::time::sleep(SEEN).await;
        for app in [&one, &two] {
            assert_eq!(
                published_kids(app).await,
                [next_kid.clone(), first_kid.clone()],
                "{what}: the keys stayed"
            );
            assert_eq!(
                health_status(app.channel.clone(), "").await,
                ServingStatus::Serving
            );
        }
    }

    // Revoke the first key: its token stops verifying at both.
    put(&kv, &next).await;
    for app in [&one, &two] {
        wait_for_kids(app, std::slice::from_ref(&next_kid), RELOAD).await;
        assert_eq!(validate(app, &token_one).await, Err(Code::Unauthenticated));
        validate(app, &token_next)
            .await
            .expect("the kept key verifies");
    }
}

async fn delete(consul: &ConsulAgent, key: &str) {
    let token = consul.management_token().unwrap();
    let status = std::process::Command::new(shippy_testkit::infra_var("TEST_CONSUL_BIN"))
        .args(["kv", "delete", key])
        .env("CONSUL_HTTP_ADDR", consul.http_addr())
        .env("CONSUL_HTTP_TOKEN", token.expose())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}
