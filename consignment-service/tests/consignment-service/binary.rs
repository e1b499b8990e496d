//! The consignment-service binary as an operator meets it.

use shippy_testkit::{assert_mentions, help_text, start_failure};

const BINARY: &str = env!("CARGO_BIN_EXE_consignment-service");

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let help = help_text(
        BINARY,
        &[("DATABASE_URL", "postgres://app:hunter2@db/consignments")],
    );
    assert_mentions(
        &help,
        &[
            "LISTEN_ADDR",
            "0.0.0.0:50051",
            "DATABASE_URL",
            "VESSEL_SERVICE_URL",
            "USER_SERVICE_URL",
            "KEYS_REFRESH_INTERVAL",
            "RUST_LOG",
            "LOG_FORMAT",
        ],
    );
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn a_bad_peer_address_stops_the_start_with_a_clear_message() {
    let stderr = start_failure(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/consignments"),
            ("VESSEL_SERVICE_URL", "vessel-service:50052"),
        ],
    );
    assert!(
        stderr.contains("`vessel-service:50052` is not a valid service address"),
        "{stderr}"
    );
}
