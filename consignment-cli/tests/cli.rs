//! consignment-cli as a user runs it, against the real services in-process.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use shippy_harness::Cluster;
use shippy_testkit::{assert_failed_in_one_line, assert_ran, stderr, stdout};

const BINARY: &str = env!("CARGO_BIN_EXE_consignment-cli");

struct World {
    cluster: Cluster,
    /// An empty working directory (no consignment.json in it).
    dir: PathBuf,
}

impl World {
    async fn new() -> Self {
        let cluster = Cluster::start().await;
        let dir = std::env::temp_dir().join(format!("consignment-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { cluster, dir }
    }

    /// Runs consignment-cli in the world's directory, sending `token` if given.
    async fn run(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .current_dir(&self.dir)
            .env(
                "CONSIGNMENT_SERVICE_URL",
                format!("http://{}", self.cluster.shipping_addr),
            )
            .env("SHIPPY_CONFIG_DIR", self.dir.join("config"))
            .env_remove("SHIPPY_TOKEN");
        if let Some(token) = token {
            command.env("SHIPPY_TOKEN", token);
        }
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn create_then_list_with_the_saved_login() {
    let world = World::new().await;
    let (_, token) = world.cluster.user("cli@example.com").await;
    // As `user-cli login` would have saved it.
    shippy_cli::saved::save_token(&world.dir.join("config").join("token"), &token).unwrap();

    // No file, none in the directory: the original's sample.
    let created = world.run(&["create"], None).await;
    assert_ran(&created, &["on vessel vessel002 (3 containers, 55000 kg)"]);

    let file = world.write(
        "small.json",
        r#"{"description": "Two crates", "weight": 40, "containers": [{"customer_id": "c9", "origin": "Leeds"}]}"#,
    );
    let created = world.run(&["create", &file, "--json"], None).await;
    assert_ran(&created, &[]);
    let small: serde_json::Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(small["weight"], 40);
    assert_eq!(small["vessel_id"], "vessel002");
    assert!(
        !small["containers"][0]["user_id"]
            .as_str()
            .unwrap()
            .is_empty(),
        "defaults to the caller"
    );

    let list = world.run(&["list"], None).await;
    let table = assert_ran(&list, &["Two crates", "This is a test consignment"]);
    assert!(table.starts_with("ID"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].contains("Two crates"), "newest first: {table}");

    let list = world
        .run(&["list", "--json", "--page-size", "1"], None)
        .await;
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(all.len(), 2, "every page is fetched");

    let id = small["id"].as_str().unwrap();
    let cancelled = world.run(&["cancel", id], None).await;
    assert_ran(&cancelled, &[]);
    assert!(
        stdout(&cancelled).contains(&format!("cancelled consignment {id}")),
        "{}",
        stdout(&cancelled)
    );
    let list = world.run(&["list", "--json"], None).await;
    let left: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(left.len(), 1, "the cancelled one is gone");
    assert_ne!(left[0]["id"], small["id"]);
    let unknown = world.run(&["cancel", "no-such-id"], None).await;
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("you have no consignment"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test]
async fn failures_print_one_clear_line_and_exit_non_zero() {
    let world = World::new().await;
    let (_, token) = world.cluster.user("oops@example.com").await;
    let invalid = world.write("invalid.json", "{ not json");
    let typo = world.write(
        "typo.json",
        r#"{"description": "x", "weigth": 5, "containers": []}"#,
    );
    let heavy = world.write(
        "heavy.json",
        r#"{"description": "Lead", "weight": 9000000, "containers": [{"customer_id": "c1"}]}"#,
    );
    let missing = Path::new("/nonexistent/consignment.json")
        .display()
        .to_string();
    let cases: [(&[&str], Option<&str>, &str); 8] = [
        (
            &["create", &missing],
            Some(&token),
            "cannot read /nonexistent/consignment.json",
        ),
        (
            &["create", &invalid],
            Some(&token),
            "is not a valid consignment",
        ),
        (&["create", &typo], Some(&token), "unknown field `weigth`"),
        (&["create"], None, "not logged in"),
        (&["list"], Some("garbage"), "invalid token"),
        (&["create", &heavy], Some(&token), "no vessel has room left"),
        (
            &["--addr", "http://127.0.0.1:9", "list"],
            Some(&token),
            "cannot reach consignment-service",
        ),
        (
            &["--addr", "nonsense", "list"],
            Some(&token),
            "is not a valid service address",
        ),
    ];
    for (args, token, expected) in cases {
        let output = world.run(args, token).await;
        assert_failed_in_one_line(&output, args, expected);
    }
}

/// `create` sends an idempotency key: the same key given twice answers the
/// same consignment and books once; a create that could not reach the
/// service says which key retries it safely.
#[tokio::test]
async fn create_with_one_idempotency_key_twice_books_once() {
    let world = World::new().await;
    let (_, token) = world.cluster.user("twice-cli@example.com").await;
    let args = ["create", "--json", "--idempotency-key", "order-42"];
    let first = world.run(&args, Some(&token)).await;
    assert_ran(&first, &[]);
    let again = world.run(&args, Some(&token)).await;
    assert_ran(&again, &[]);
    let first: serde_json::Value = serde_json::from_str(&stdout(&first)).unwrap();
    let again: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(first["id"], again["id"]);
    let list = world.run(&["list", "--json"], Some(&token)).await;
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(all.len(), 1, "booked once");
    // Without a key given, each create is a new consignment.
    let other = world.run(&["create", "--json"], Some(&token)).await;
    let other: serde_json::Value = serde_json::from_str(&stdout(&other)).unwrap();
    assert_ne!(other["id"], first["id"]);

    let unreachable = world
        .run(&["--addr", "http://127.0.0.1:9", "create"], Some(&token))
        .await;
    assert!(!unreachable.status.success());
    let message = stderr(&unreachable);
    assert!(
        message.contains("cannot reach consignment-service")
            && message.contains("create --idempotency-key "),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    let bad = world
        .run(&["create", "--idempotency-key", "has space"], Some(&token))
        .await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("idempotency-key"), "{}", stderr(&bad));
}

/// consignment-service unavailable at first (it is not listening yet): the
/// create is retried, with the same key, and succeeds once it is up.
#[tokio::test]
async fn create_retries_while_the_service_is_unavailable() {
    let world = World::new().await;
    let (_, token) = world.cluster.user("patient-cli@example.com").await;
    let mut proxy = shippy_testkit::LateProxy::reserve(world.cluster.shipping_addr);
    let address = format!("http://{}", proxy.address());
    let run = {
        let mut command = Command::new(BINARY);
        command
            .args(["--addr", &address, "create", "--json"])
            .current_dir(&world.dir)
            .env("SHIPPY_CONFIG_DIR", world.dir.join("config"))
            .env("SHIPPY_TOKEN", &token);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    proxy.start().await;
    let output = run.await.unwrap();
    assert_ran(&output, &[]);
    let list = world.run(&["list", "--json"], Some(&token)).await;
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(all.len(), 1);
}
