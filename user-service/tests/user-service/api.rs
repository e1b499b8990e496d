//! user-service over gRPC against real PostgreSQL and NATS JetStream.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message;
use shippy_auth::{AUDIENCE, Claims, ISSUER, KeySet};
use shippy_harness::{
    PASSWORD, bearer,
    user::{TestApp, stream_messages, user_id},
};
use shippy_harness::{refused, refuses_each};
use shippy_proto::{
    events::v1::UserCreated,
    user::v1::{GetPublicKeysRequest, Request as ListRequest, Token, User},
};
use tonic::{Code, Request, metadata::MetadataValue};

fn user(name: &str, email: &str, password: &str) -> User {
    User {
        name: name.into(),
        email: email.into(),
        company: "ACME".into(),
        password: password.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_answers_the_profile_and_never_the_password() {
    let app = TestApp::spawn().await;
    let response = app
        .users()
        .create(user(" Ewan ", "Ewan@Example.COM", PASSWORD))
        .await
        .expect("created")
        .into_inner();
    let profile = response.user.expect("a user");
    assert!(uuid::Uuid::parse_str(&profile.id).is_ok(), "{}", profile.id);
    assert_eq!(profile.name, "Ewan");
    assert_eq!(profile.email, "ewan@example.com", "stored lower-cased");
    assert_eq!(profile.company, "ACME");
    assert!(profile.created_at.is_some());
    // UserProfile has no password field at all; nothing in the encoded answer
    // looks like the password or a bcrypt hash either.
    let bytes = String::from_utf8_lossy(&profile.encode_to_vec()).into_owned();
    assert!(
        !bytes.contains(PASSWORD) && !bytes.contains("$2b$"),
        "{bytes}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_accounts_are_invalid_argument_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (user("", "a@example.com", PASSWORD), "name"),
        (user("A", "not-an-email", PASSWORD), "email"),
        (user("A", "", PASSWORD), "email"),
        (user("A", "a@example.com", "short"), "password"),
        (user("A", "a@example.com", &"x".repeat(100)), "password"),
    ];
    refuses_each(Code::InvalidArgument, cases, async |bad| {
        app.users().create(bad).await
    })
    .await;
    app.create_user("Still", "still@example.com").await;
    app.stop().await;
}

/// Issue 23: `ü1@example.com` and `"john doe"@example.com` were accepted,
/// and their welcome mail never went out (refused by the SMTP server, or
/// dropped). Now sign-up refuses them, saying what to use instead.
#[tokio::test]
async fn addresses_the_welcome_mail_cannot_reach_are_refused_at_sign_up() {
    let app = TestApp::spawn().await;
    for (bad, says) in [
        ("ü1@example.com", "ASCII form"),
        ("ewan@bücher.example", "punycode"),
        ("\"john doe\"@example.com", "no quotes or spaces"),
    ] {
        // Refused.
        refused(
            app.users().create(user("Refused", bad, PASSWORD)).await,
            Code::InvalidArgument,
            &["email", says],
        );
    }
    app.create_user("Plain", "plain.address+tag@example.com")
        .await;
    app.stop().await;
}

#[tokio::test]
async fn control_characters_and_huge_strings_are_invalid_argument_with_a_short_escaped_message() {
    let app = TestApp::spawn().await;
    let huge = format!("{}@example.com", "a".repeat(10_000));
    for (bad, field) in [
        (
            user("Eve\r\nBcc: spy@example.com", "eve@example.com", PASSWORD),
            "name",
        ),
        (user("Eve\0", "eve@example.com", PASSWORD), "name"),
        (
            User {
                company: "ACME\nINFO forged log line".into(),
                ..user("Eve", "eve@example.com", PASSWORD)
            },
            "company",
        ),
        (
            user("Eve", "eve@example.com\r\nBcc: spy@example.com", PASSWORD),
            "email",
        ),
        (user("Eve", &huge, PASSWORD), "email"),
    ] {
        // Invalid.
        let status = refused(
            app.users().create(bad).await,
            Code::InvalidArgument,
            &[field],
        );
        assert!(
            !status.message().contains(['\r', '\n', '\0']),
            "escaped: {:?}",
            status.message()
        );
    }
    app.create_user("Still", "still@example.com").await;
    app.stop().await;
}

#[tokio::test]
async fn a_registered_email_is_already_exists_whatever_its_case() {
    let app = TestApp::spawn().await;
    app.create_user("First", "taken@example.com").await;
    // Taken.
    let status = refused(
        app.users()
            .create(user("Second", "TAKEN@example.com", PASSWORD))
            .await,
        Code::AlreadyExists,
        &[],
    );
    assert_eq!(status.message(), "email already registered");
    app.stop().await;
}

#[tokio::test]
async fn create_puts_a_user_created_event_on_the_stream() {
    let app = TestApp::spawn().await;
    let id = app.create_user("Kane", "kane@example.com").await;
    let mut stream = app.stream().await;
    let messages = stream_messages(&mut stream, 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.subject.as_str(), app.settings.user_created_subject);
    let event = UserCreated::decode(message.payload.as_ref()).expect("a UserCreated");
    assert_eq!(event.user_id, id);
    assert_eq!(
        (event.name.as_str(), event.email.as_str()),
        ("Kane", "kane@example.com")
    );
    assert_eq!(event.company, "Shippy Ltd");
    assert!(event.occurred_at.is_some());
    let msg_id = message
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .expect("Nats-Msg-Id");
    assert_eq!(
        msg_id.as_str(),
        event.event_id,
        "the broker de-duplicates by event id"
    );
    let payload = String::from_utf8_lossy(&message.payload).into_owned();
    assert!(!payload.contains(PASSWORD) && !payload.contains("$2b$"));
    app.stop().await;
}

#[tokio::test]
async fn auth_issues_a_token_other_services_can_verify_with_the_public_keys() {
    let app = TestApp::spawn().await;
    let id = app.create_user("Ada", "ada@example.com").await;
    let login = user("", "ADA@example.com", PASSWORD);
    let answer = app.users().auth(login).await.expect("logged in");
    let answer = answer.into_inner();
    assert!(answer.valid);
    assert_eq!(answer.user_id, id);

    let keys = app
        .users()
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].algorithm, "EdDSA");
    let claims = KeySet::from_proto(&keys)
        .unwrap()
        .verify(&answer.token)
        .expect("verifies");
    assert_eq!(claims.sub, id);
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        (ISSUER, AUDIENCE)
    );
    assert_eq!(claims.exp - claims.iat, 3600, "the configured TTL");
    let header = jsonwebtoken::decode_header(&answer.token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(keys.keys[0].kid.as_str()));
    // Nothing of the password in the token.
    let payload = answer.token.split('.').nth(1).unwrap();
    let decoded = base64_decode(payload);
    assert!(
        !decoded.contains(PASSWORD) && !decoded.contains("$2b$") && !decoded.contains("password")
    );

    let validated = app
        .users()
        .validate_token(Token {
            token: answer.token,
            ..Default::default()
        })
        .await
        .expect("valid")
        .into_inner();
    assert!(validated.valid);
    assert_eq!(validated.user_id, id);
    app.stop().await;
}

pub(crate) fn base64_decode(text: &str) -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    String::from_utf8(URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    app.create_user("Bob", "bob@example.com").await;
    let wrong_password = app
        .users()
        .auth(user("", "bob@example.com", "not the password"))
        .await
        .expect_err("wrong password");
    let unknown = app
        .users()
        .auth(user("", "nobody@example.com", PASSWORD))
        .await
        .expect_err("unknown email");
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.message(), unknown.message());
    app.stop().await;
}

#[tokio::test]
async fn unknown_email_takes_as_long_as_a_wrong_password() {
    // At cost 10 one bcrypt verify takes tens of milliseconds, far more than
    // the database lookup: were an unknown email answered without a verify,
    // it would take a small fraction of the time. The bound is loose, so a
    // busy machine cannot fail it; only a missing verify can.
    let app = TestApp::spawn_custom(shippy_testkit::infra_var("TEST_NATS_URL"), |settings| {
        settings.bcrypt_cost = 10;
    })
    .await;
    app.create_user("Tim", "tim@example.com").await;
    // bcrypt runs at the lowest priority: on a machine busy with other work
    // a verify may wait for seconds, which must not look like a failure.
    let patient = shippy_service::discovery::static_channel(
        &format!("http://{}", app.address),
        shippy_service::discovery::CallTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(60),
        },
    )
    .unwrap();
    let mut wrong_password = Vec::new();
    let mut unknown_email = Vec::new();
    for _ in 0..5 {
        for (email, password, times) in [
            ("tim@example.com", "wrong password", &mut wrong_password),
            ("nobody@example.com", PASSWORD, &mut unknown_email),
        ] {
            let started = Instant::now();
            // Refused.
            refused(
                shippy_proto::user::v1::user_service_client::UserServiceClient::new(
                    patient.clone(),
                )
                .auth(user("", email, password))
                .await,
                Code::Unauthenticated,
                &[],
            );
            times.push(started.elapsed());
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (wrong, unknown) = (median(&mut wrong_password), median(&mut unknown_email));
    assert!(
        unknown * 2 >= wrong,
        "unknown email answered in {unknown:?}, wrong password in {wrong:?}"
    );
    app.stop().await;
}

/// A token signed with `key_pem` whose claims `tweak` changed.
fn token_with(key_pem: &str, tweak: impl FnOnce(&mut Claims)) -> String {
    let now = chrono::Utc::now().timestamp() as u64;
    let mut claims = Claims {
        sub: uuid::Uuid::new_v4().to_string(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        iat: now,
        exp: now + 600,
        roles: Vec::new(),
    };
    tweak(&mut claims);
    let keys = KeySetHelper::kid(key_pem);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

struct KeySetHelper;

impl KeySetHelper {
    /// The kid user-service gives the key in `pem` (its JWK thumbprint),
    /// learnt the way any client would: from a token it signed.
    fn kid(pem: &str) -> String {
        let dir = std::env::temp_dir().join(format!("kid-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, pem).unwrap();
        let signer =
            user_service::tokens::TokenSigner::load(Some(&dir), Duration::from_secs(60)).unwrap();
        std::fs::remove_file(&dir).unwrap();
        signer.public_keys()[0].kid.clone()
    }
}

#[tokio::test]
async fn forged_expired_misaddressed_and_garbage_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let other_key = user_service::tokens::generate_pem(1).unwrap();
    let now = chrono::Utc::now().timestamp() as u64;
    let cases = [
        ("another key", token_with(&other_key, |_| {})),
        ("expired", token_with(app.key_pem.expose(), |c| {
            c.iat = now - 7200;
            c.exp = now - 3600;
        })),
        ("issued in the future", token_with(app.key_pem.expose(), |c| {
            c.iat = now + 3600;
            c.exp = now + 7200;
        })),
        ("wrong audience", token_with(app.key_pem.expose(), |c| c.aud = "someone-else".into())),
        ("wrong issuer", token_with(app.key_pem.expose(), |c| c.iss = "mallory".into())),
        (
            "alg none",
            // {"alg":"none","typ":"JWT"}.{"sub":"x","aud":"shippy","iss":"shippy-user-service","exp":9999999999}.
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwiYXVkIjoic2hpcHB5IiwiaXNzIjoic2hpcHB5LXVzZXItc2VydmljZSIsImV4cCI6OTk5OTk5OTk5OX0.".to_owned(),
        ),
        ("garbage", "garbage".to_owned()),
        ("empty", String::new()),
        ("three dots", "a.b.c".to_owned()),
    ];
    for (what, token) in cases {
        let status = app
            .users()
            .validate_token(Token {
                token: token.clone(),
                ..Default::default()
            })
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = app
            .users()
            .get_all(bearer(ListRequest::default(), &token))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    // A good token made the same way passes, so the refusals above are the
    // claims' fault, not the test's; and the service kept running.
    let good = token_with(app.key_pem.expose(), |_| {});
    app.users()
        .validate_token(Token {
            token: good,
            ..Default::default()
        })
        .await
        .expect("a well-made token is valid");
    app.stop().await;
}

#[tokio::test]
async fn get_and_get_all_need_a_token() {
    let app = TestApp::spawn().await;
    let id = app.create_user("Grace", "grace@example.com").await;
    let wanted = user_id(&id);
    // No token.
    refused(
        app.users().get(wanted.clone()).await,
        Code::Unauthenticated,
        &["authorization: Bearer"],
    );
    // No token.
    refused(
        app.users().get_all(ListRequest::default()).await,
        Code::Unauthenticated,
        &[],
    );

    let token = app.login("grace@example.com").await;
    let found = app
        .users()
        .get(bearer(wanted, &token))
        .await
        .expect("found")
        .into_inner();
    assert_eq!(found.user.unwrap().email, "grace@example.com");

    // The original shippy's `token` metadata key works too.
    let mut legacy = Request::new(User {
        email: "GRACE@example.com".into(),
        ..Default::default()
    });
    legacy
        .metadata_mut()
        .insert("token", MetadataValue::try_from(token.as_str()).unwrap());
    let found = app
        .users()
        .get(legacy)
        .await
        .expect("found by email")
        .into_inner();
    assert_eq!(found.user.unwrap().id, id);

    let missing = user_id(&uuid::Uuid::new_v4().to_string());
    // Not grace's.
    refused(
        app.users().get(bearer(missing.clone(), &token)).await,
        Code::PermissionDenied,
        &[],
    );
    // Unknown.
    refused(
        app.users()
            .get(bearer(missing, &app.admin_token().await))
            .await,
        Code::NotFound,
        &[],
    );
    let malformed = user_id("not-a-uuid");
    // Bad id.
    refused(
        app.users().get(bearer(malformed, &token)).await,
        Code::InvalidArgument,
        &[],
    );
    app.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_account_with_a_retry_hint() {
    let app = TestApp::spawn_custom(shippy_testkit::infra_var("TEST_NATS_URL"), |settings| {
        settings.login.max_failures = 3;
    })
    .await;
    app.create_user("Victim", "victim@example.com").await;
    app.create_user("Bystander", "bystander@example.com").await;
    for _ in 0..3 {
        // Wrong password.
        refused(
            app.users()
                .auth(user("", "victim@example.com", "wrong password"))
                .await,
            Code::Unauthenticated,
            &[],
        );
    }
    // Past the limit even the right password waits: the guesser learns nothing.
    for password in ["another guess", PASSWORD] {
        // Throttled.
        refused(
            app.users()
                .auth(user("", "VICTIM@example.com", password))
                .await,
            Code::ResourceExhausted,
            &["retry in"],
        );
    }
    // Another account is not affected.
    app.login("bystander@example.com").await;
    app.stop().await;
}
