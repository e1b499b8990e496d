//! The consignment-service binary as an operator meets it.

use shippy_testkit::{assert_help, assert_start_fails};

const BINARY: &str = env!("CARGO_BIN_EXE_consignment-service");

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    assert_help(
        BINARY,
        &[("DATABASE_URL", "postgres://app:hunter2@db/consignments")],
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
}

#[test]
fn a_bad_peer_address_stops_the_start_with_a_clear_message() {
    assert_start_fails(
        BINARY,
        &[
            ("DATABASE_URL", "postgres://app@127.0.0.1:9/consignments"),
            ("VESSEL_SERVICE_URL", "vessel-service:50052"),
        ],
        &["`vessel-service:50052` is not a valid service address"],
    );
}
