//! Each service's settings as tests run it, spelled out once: on a random
//! loopback port (and a random metrics port), no discovery, the shared
//! [`SERVICE_TOKEN`], timings short enough for a test to watch. A test
//! changes the fields it is about on the value these return.

use std::time::Duration;

use consignment_service::settings::Settings as ConsignmentSettings;
use shippy_auth::remote::TokenKeys;
use shippy_service::{base::Serve, settings::SecretUrl};
use shippy_testkit::{RESERVATION_TTL, SERVICE_TOKEN, infra_var};
use user_service::settings::Settings as UserSettings;
use vessel_service::{domain::AccountQuota, settings::Settings as VesselSettings};

use crate::ADMIN;

/// A per-account cap no test reaches by accident: tests of the fleet's room
/// (and of big consignments) let one account take all of it. The cap's own
/// tests start the cluster with [`AccountQuota::DEFAULT`].
pub const UNCAPPED: AccountQuota = AccountQuota {
    containers: 1 << 40,
    weight: 1 << 50,
};

/// user-service on `database_url`, publishing to the test NATS on a stream
/// and subject of its own, [`ADMIN`] its administrator, bcrypt at cost 4,
/// tokens valid for an hour, a signing key generated at start (no key file).
pub fn user(database_url: SecretUrl) -> UserSettings {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    UserSettings {
        serve: Serve::loopback(),
        database_url,
        nats_url: infra_var("TEST_NATS_URL").parse().unwrap(),
        jwt_signing_key_file: None,
        jwt_ttl: Duration::from_secs(3600).into(),
        bcrypt_cost: 4,
        admin_emails: vec![ADMIN.into()],
        login: Default::default(),
        events_stream: format!("USERS_{unique}"),
        user_created_subject: format!("test.{unique}.user.created"),
        keys: Default::default(),
    }
}

/// vessel-service on `database_url`, verifying tokens with the keys of the
/// user-service at `user_service_url`, no account capped ([`UNCAPPED`]),
/// reservations held for [`RESERVATION_TTL`] and swept every 100 ms.
pub fn vessel(database_url: SecretUrl, user_service_url: String) -> VesselSettings {
    VesselSettings {
        serve: Serve::loopback(),
        store: database_url.into(),
        service_token: Some(SERVICE_TOKEN.parse().unwrap()),
        reservation_ttl: RESERVATION_TTL.into(),
        reservation_sweep_interval: Duration::from_millis(100).into(),
        account_max_containers: UNCAPPED.containers,
        account_max_weight: UNCAPPED.weight,
        keys: TokenKeys::at(user_service_url, Default::default()),
    }
}

/// consignment-service on `database_url`, finding vessel- and user-service
/// at these URLs (`http://…` or `dns:///…`), recovering unfinished sagas
/// older than a second every 200 ms.
pub fn consignment(
    database_url: SecretUrl,
    vessel_service_url: String,
    user_service_url: String,
) -> ConsignmentSettings {
    ConsignmentSettings {
        serve: Serve::loopback(),
        store: database_url.into(),
        vessel_service_url,
        service_token: Some(SERVICE_TOKEN.parse().unwrap()),
        recovery_interval: Duration::from_millis(200).into(),
        recovery_after: Duration::from_secs(1).into(),
        keys: TokenKeys::at(user_service_url, Default::default()),
    }
}
