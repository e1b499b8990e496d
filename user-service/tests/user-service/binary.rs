//! The user-service binary as an operator meets it.

use shippy_testkit::{assert_help, assert_start_fails};

const BINARY: &str = env!("CARGO_BIN_EXE_user-service");

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    assert_help(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app:hunter2@db/users"),
            ("NATS_URL", "nats://events:hunter2@nats:4222"),
        ],
        &[
            "LISTEN_ADDR",
            "0.0.0.0:50053",
            "DATABASE_URL",
            "NATS_URL",
            "JWT_SIGNING_KEY_FILE",
            "JWT_SIGNING_KEYS_CONSUL_KEY",
            "JWT_TTL",
            "BCRYPT_COST",
            "ADMIN_EMAILS",
            "LOGIN_MAX_FAILURES",
            "LOGIN_MAX_FAILURES_PER_ADDRESS",
            "LOGIN_FAILURE_WINDOW",
            "USER_EVENTS_STREAM",
            "USER_CREATED_SUBJECT",
            "RUST_LOG",
            "LOG_FORMAT",
        ],
    );
}

#[test]
fn a_bad_signing_key_file_stops_the_start_with_a_clear_message() {
    assert_start_fails(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/users"),
            ("JWT_SIGNING_KEY_FILE", "/nonexistent/key.pem"),
        ],
        &["cannot read JWT_SIGNING_KEY_FILE /nonexistent/key.pem"],
    );
}

#[test]
fn a_bcrypt_cost_out_of_range_is_refused() {
    assert_start_fails(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/users"),
            ("BCRYPT_COST", "3"),
        ],
        &["--bcrypt-cost"],
    );
}

/// The server to start, listening (and serving metrics) on any free port,
/// its stdout to `stdout`, its stderr dropped.
fn server(stdout: std::process::Stdio) -> std::process::Command {
    let mut command = std::process::Command::new(BINARY);
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .stdout(stdout)
        .stderr(std::process::Stdio::null());
    command
}

/// `user-service keys ARGS --file FILE`: (success, stdout, stderr).
fn keys(file: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(BINARY)
        .arg("keys")
        .args(args)
        .arg("--file")
        .arg(file)
        .env_remove("JWT_SIGNING_KEY_FILE")
        .env_remove("JWT_SIGNING_KEYS_CONSUL_KEY")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The kids `keys list` prints, the signing one first.
fn kids(file: &std::path::Path) -> Vec<String> {
    let (ok, out, err) = keys(file, &["list"]);
    assert!(ok, "{err}");
    out.lines()
        .map(|line| line.split('\t').next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_keys_command_publishes_rotates_and_revokes_keys_in_a_file() {
    let dir = std::env::temp_dir().join(format!("shippy-keys-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");

    // No file yet: rotate makes one, owner-only.
    let (ok, out, err) = keys(&file, &["rotate"]);
    assert!(ok, "{err}");
    let first = kids(&file);
    assert_eq!(first.len(), 1);
    assert!(out.contains(&format!("{} signs now", first[0])), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Publish the next key: it verifies, the first still signs.
    let (ok, out, err) = keys(&file, &["add"]);
    assert!(ok, "{err}");
    let both = kids(&file);
    assert_eq!((both.len(), &both[0]), (2, &first[0]));
    assert!(out.contains(&format!("added {}", both[1])), "{out}");
    assert!(out.contains(&format!("{}\tverifies", both[1])), "{out}");

    // Sign with it.
    let (ok, _, err) = keys(&file, &["rotate", "--kid", &both[1]]);
    assert!(ok, "{err}");
    assert_eq!(kids(&file), [both[1].clone(), both[0].clone()]);

    // Revoke the old one; the last key cannot go, nor an unknown one.
    let (ok, out, err) = keys(&file, &["revoke", "--kid", &both[0]]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("revoked {}", both[0])), "{out}");
    assert_eq!(kids(&file), [both[1].clone()]);
    let (ok, _, err) = keys(&file, &["revoke", "--kid", &both[1]]);
    assert!(!ok && err.contains("only key"), "{err}");
    let (ok, _, err) = keys(&file, &["revoke", "--kid", "nope\u{1b}[31m"]);
    assert!(
        !ok && err.contains("no key \"nope\\u{1b}[31m\""),
        "escaped: {err}"
    );
    assert_eq!(kids(&file), [both[1].clone()], "refusals change nothing");

    // A broken file is refused, not overwritten.
    std::fs::write(&file, "garbage").unwrap();
    let (ok, _, err) = keys(&file, &["add"]);
    assert!(!ok && err.contains("no Ed25519"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "garbage");
    // Nowhere named: told where to say.
    let output = std::process::Command::new(BINARY)
        .args(["keys", "list"])
        .env_remove("JWT_SIGNING_KEY_FILE")
        .env_remove("JWT_SIGNING_KEYS_CONSUL_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--file FILE or --consul-key KEY"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sends SIGHUP to the process `pid`.
fn hangup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The metrics address in a service's "started" line.
fn metrics_address(line: &str) -> Option<std::net::SocketAddr> {
    let after = &line[line.find("metrics")? + "metrics".len()..];
    let start = after.find(|c: char| c.is_ascii_digit())?;
    after[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect::<String>()
        .parse()
        .ok()
}

#[tokio::test]
async fn sighup_reloads_the_keys_and_a_bad_file_is_counted_not_used() {
    use std::io::BufRead as _;

    let dir = std::env::temp_dir().join(format!("shippy-keys-hup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    assert!(keys(&file, &["rotate"]).0);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let mut child = server(std::process::Stdio::piped())
        .env(
            "DATABASE_URL",
            shippy_testkit::fresh_postgres_database("hup")
                .await
                .expose(),
        )
        .env("NATS_URL", shippy_testkit::infra_var("TEST_NATS_URL"))
        .env("JWT_SIGNING_KEY_FILE", &file)
        .env("USER_EVENTS_STREAM", format!("USERS_{unique}"))
        .env(
            "USER_CREATED_SUBJECT",
            format!("test.{unique}.user.created"),
        )
        .env("RUST_LOG", "warn,shippy::started=info")
        .env("LOG_FORMAT", "json")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (found, addresses) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let (Some(grpc), Some(metrics)) = (
                shippy_testkit::started_address(&line),
                metrics_address(&line),
            ) {
                let _ = found.send((grpc, metrics));
            }
        }
    });
    let (address, metrics) = addresses
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("user-service started");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    shippy_testkit::wait_for_health(
        &channel,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
    let published = || shippy_harness::published_kids(channel.clone());
    assert_eq!(published().await, kids(&file));

    // A new signing key, and SIGHUP: taken at once, the process lives on.
    assert!(keys(&file, &["rotate"]).0);
    hangup(child.id());
    let wanted = kids(&file);
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen = published().await;
        if seen == wanted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, wanted, "reloaded within a second of SIGHUP");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP did not end it");

    // A broken file: nothing changes, the failure is counted once.
    // Written whole and renamed over it: a reader never sees it half
    // written (an empty file would be a second, different failure).
    let garbage = file.with_extension("new");
    std::fs::write(&garbage, "garbage").unwrap();
    std::fs::rename(&garbage, &file).unwrap();
    hangup(child.id());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(published().await, wanted);
    let scraped = shippy_testkit::http_get(&format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert!(
        scraped.contains("signing_key_reload_failures_total 1"),
        "{scraped}"
    );
    assert!(child.try_wait().unwrap().is_none());
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_consul_key_without_an_agent_or_missing_from_it_stops_the_start_with_what_to_do() {
    assert_start_fails(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/users"),
            ("JWT_SIGNING_KEYS_CONSUL_KEY", "shippy/jwt/signing-keys"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
        &["needs CONSUL_HTTP_ADDR"],
    );

    let consul = shippy_testkit::ConsulAgent::start().await;
    let address = consul.http_addr();
    let stderr = tokio::task::spawn_blocking(move || {
        shippy_testkit::start_failure(
            BINARY,
            &[
                ("DATABASE_URL", "postgres://app@127.0.0.1:9/users"),
                ("JWT_SIGNING_KEYS_CONSUL_KEY", "shippy/jwt/signing-keys"),
                ("METRICS_ADDR", "127.0.0.1:0"),
                ("CONSUL_HTTP_ADDR", &address),
            ],
        )
    })
    .await
    .unwrap();
    shippy_testkit::assert_mentions(
        &stderr,
        &[
            "shippy/jwt/signing-keys does not exist",
            "user-service keys rotate --consul-key",
        ],
    );
}

#[tokio::test]
async fn a_sighup_while_the_start_waits_for_consul_does_not_end_the_process() {
    // Consul cannot be reached: the start retries reading the keys for
    // several seconds, long enough for an operator's SIGHUP to land.
    let consul = shippy_testkit::ClosedPort::new();
    let mut child = server(std::process::Stdio::null())
        .env("DATABASE_URL", "postgres://app@127.0.0.1:9/users")
        .env("JWT_SIGNING_KEYS_CONSUL_KEY", "shippy/jwt/signing-keys")
        .env("CONSUL_HTTP_ADDR", consul.address.to_string())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(child.try_wait().unwrap().is_none(), "still starting");
    hangup(child.id());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        exited.is_none(),
        "SIGHUP during the start ended the process: {exited:?}"
    );
}
