//! The vessel-service binary as an operator meets it: `--help`, and what it
//! says when its configuration is wrong.

use std::process::Command;

use shippy_testkit::{assert_mentions, help_text, start_failure};

const BINARY: &str = env!("CARGO_BIN_EXE_vessel-service");

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let help = help_text(BINARY, &[]);
    assert_mentions(
        &help,
        &[
            "--listen-addr",
            "LISTEN_ADDR",
            "0.0.0.0:50052",
            "--database-url",
            "DATABASE_URL",
            "USER_SERVICE_URL",
            "KEYS_REFRESH_INTERVAL",
            "--log-filter",
            "RUST_LOG",
            "--log-format",
            "LOG_FORMAT",
        ],
    );
}

#[test]
fn help_never_shows_the_database_password() {
    let help = help_text(
        BINARY,
        &[("DATABASE_URL", "postgres://app:hunter2@db/vessels")],
    );
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn an_unsupported_database_scheme_is_refused_with_a_clear_message() {
    let stderr = start_failure(
        BINARY,
        &[("DATABASE_URL", "mysql://app:hunter2@127.0.0.1/vessels")],
    );
    assert!(
        stderr.contains("scheme `mysql` is not supported"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_missing_database_url_is_refused() {
    let output = Command::new(BINARY)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
}
