//! The user-service binary as an operator meets it.

use shippy_testkit::{assert_mentions, help_text, start_failure};

const BINARY: &str = env!("CARGO_BIN_EXE_user-service");

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let help = help_text(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app:hunter2@db/users"),
            ("NATS_URL", "nats://events:hunter2@nats:4222"),
        ],
    );
    assert_mentions(
        &help,
        &[
            "LISTEN_ADDR",
            "0.0.0.0:50053",
            "DATABASE_URL",
            "NATS_URL",
            "JWT_SIGNING_KEY_FILE",
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
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn a_bad_signing_key_file_stops_the_start_with_a_clear_message() {
    let stderr = start_failure(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/users"),
            ("JWT_SIGNING_KEY_FILE", "/nonexistent/key.pem"),
        ],
    );
    assert!(
        stderr.contains("cannot read JWT_SIGNING_KEY_FILE /nonexistent/key.pem"),
        "{stderr}"
    );
}

#[test]
fn a_bcrypt_cost_out_of_range_is_refused() {
    let stderr = start_failure(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/users"),
            ("BCRYPT_COST", "3"),
        ],
    );
    assert!(stderr.contains("--bcrypt-cost"), "{stderr}");
}
