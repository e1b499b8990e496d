//! No log line, at any level, carries a password, a bcrypt hash or a token.
//! Its own test binary: it installs the process-wide log subscriber.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use shippy_harness::{
    PASSWORD, bearer,
    user::{TestApp, user_id},
};
use shippy_proto::user::v1::{Request as ListRequest, Token, User};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_carries_a_password_hash_or_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = TestApp::spawn().await;
    let id = app.create_user("Secretive", "secretive@example.com").await;
    let duplicate = User {
        name: "Again".into(),
        email: "secretive@example.com".into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    app.users().create(duplicate).await.expect_err("taken");
    let wrong = User {
        email: "secretive@example.com".into(),
        password: "wrong password 123".into(),
        ..Default::default()
    };
    app.users().auth(wrong).await.expect_err("wrong password");
    let token = app.login("secretive@example.com").await;
    app.users()
        .validate_token(Token {
            token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.users().get(bearer(user_id(&id), &token)).await.unwrap();
    app.users()
        .get_all(bearer(ListRequest::default(), &app.admin_token().await))
        .await
        .unwrap();

    let pool = sqlx::PgPool::connect(app.settings.database_url.expose())
        .await
        .unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind("secretive@example.com")
        .fetch_one(&pool)
        .await
        .unwrap();
    app.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("user created") && logs.contains("token issued"),
        "logs were captured:\n{logs}"
    );
    assert!(logs.lines().count() > 10);
    for (secret, what) in [
        (PASSWORD, "the password"),
        ("wrong password 123", "a wrong password"),
        (hash.as_str(), "the bcrypt hash"),
        ("$2b$", "any bcrypt hash"),
        (token.as_str(), "the token"),
    ] {
        let leaks: Vec<_> = logs.lines().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "{what} appears in the logs: {leaks:#?}");
    }
}
