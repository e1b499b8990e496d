//! user-cli as a user runs it, against a real user-service (in-process, on a
//! random port, with its own database) and its own configuration directory.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use shippy_harness::{settings, spawn};
use shippy_testkit::{
    assert_failed_in_one_line, assert_ran, fresh_postgres_database, init_test_logging, stdout,
};

const BINARY: &str = env!("CARGO_BIN_EXE_user-cli");

struct World {
    addr: String,
    config: PathBuf,
    server: spawn::Service,
}

impl World {
    async fn new() -> Self {
        init_test_logging();
        let mut settings = settings::user(fresh_postgres_database("user_cli").await);
        settings.admin_emails = vec!["ewan@example.com".into()];
        let server = spawn::user(&settings).await.serving().await;
        let config =
            std::env::temp_dir().join(format!("user-cli-{}", uuid::Uuid::new_v4().simple()));
        Self {
            addr: format!("http://{}", server.address),
            config,
            server,
        }
    }

    /// Runs user-cli with `args`, feeding `stdin`.
    async fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BINARY)
            .args(args)
            .env("USER_SERVICE_URL", &self.addr)
            .env("SHIPPY_CONFIG_DIR", &self.config)
            .env_remove("SHIPPY_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.server.shutdown.trigger();
        let _ = std::fs::remove_dir_all(&self.config);
    }
}

#[tokio::test]
async fn create_login_list_and_get_work_as_a_user_expects() {
    let world = World::new().await;
    let created = world
        .run(
            &[
                "create",
                "--name",
                "Ewan",
                "--email",
                "ewan@example.com",
                "--company",
                "Shippy",
                "--password",
                "s3cret-pass",
            ],
            "",
        )
        .await;
    assert_ran(&created, &["created user Ewan <ewan@example.com>"]);

    // The password is read from stdin when not given and not on a terminal.
    let created = world
        .run(
            &[
                "--json",
                "create",
                "--name",
                "Ada",
                "--email",
                "ada@example.com",
            ],
            "another-pass\n",
        )
        .await;
    assert_ran(&created, &[]);
    let ada: serde_json::Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(ada["email"], "ada@example.com");
    assert!(ada.get("password").is_none());

    let login = world
        .run(
            &[
                "login",
                "--email",
                "ewan@example.com",
                "--password",
                "s3cret-pass",
            ],
            "",
        )
        .await;
    assert_ran(&login, &[]);
    let token = stdout(&login).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let saved = world.config.join("token");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the saved token is private");
    }

    let list = world.run(&["list"], "").await;
    assert_ran(&list, &[]);
    let table = stdout(&list);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("ewan@example.com") && table.contains("ada@example.com"),
        "{table}"
    );

    let list = world.run(&["list", "--json", "--page-size", "1"], "").await;
    let users: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(users.len(), 2, "every page is fetched");

    let id = ada["id"].as_str().unwrap();
    let get = world.run(&["get", id, "--json"], "").await;
    assert_ran(&get, &[]);
    let got: serde_json::Value = serde_json::from_str(&stdout(&get)).unwrap();
    assert_eq!(got["name"], "Ada");
}

#[tokio::test]
async fn failures_print_one_clear_line_and_exit_non_zero() {
    let world = World::new().await;
    let args = [
        "create",
        "--name",
        "Bob",
        "--email",
        "bob@example.com",
        "--password",
        "bob-password",
    ];
    assert!(world.run(&args, "").await.status.success());

    for (args, stdin, expected) in [
        (&args[..], "", "error: email already registered"),
        (
            &[
                "create",
                "--name",
                "Bo",
                "--email",
                "nope",
                "--password",
                "bob-password",
            ][..],
            "",
            "is not a valid email address",
        ),
        (
            &[
                "create",
                "--name",
                "Bo",
                "--email",
                "b@example.com",
                "--password",
                "short",
            ][..],
            "",
            "at least 8 characters",
        ),
        (
            &[
                "login",
                "--email",
                "bob@example.com",
                "--password",
                "wrong-password",
            ][..],
            "",
            "email or password is incorrect",
        ),
        (&["list"][..], "", "not logged in"),
        (&["--token", "garbage", "list"][..], "", "invalid token"),
        (
            &["--addr", "http://127.0.0.1:9", "list", "--token", "x"][..],
            "",
            "cannot reach user-service",
        ),
        (
            &["--addr", "not a url", "list"][..],
            "",
            "is not a valid service address",
        ),
    ] {
        let output = world.run(args, stdin).await;
        assert_failed_in_one_line(&output, args, expected);
    }
}
