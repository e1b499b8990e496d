//! What starts shippy-rs in tests, shared by every crate's integration tests
//! (as a dev-dependency; `shippy-testkit` holds the infrastructure beneath).
//!
//! Where things are:
//!
//! - [`settings`]: each service's settings as tests run it, written once —
//!   a new setting is added there and nowhere else.
//! - [`spawn`]: one service in-process on a random port ([`spawn::vessel_service`],
//!   [`spawn::consignment_service`], …), and a [`channel`] to an address.
//! - [`cluster`]: the [`Cluster`] builder — user-, vessel- and
//!   consignment-service in-process, each on a fresh database (which store,
//!   which extra settings), serving once started.
//! - [`user`]: user-service alone ([`user::TestApp`]), with its signing key
//!   and JetStream stream at hand.
//! - [`shipping`]: the sample consignment, a cluster's consignment calls and
//!   the fleet's room.
//! - [`status`]: a refusal's code and message ([`refused`], [`assert_status`],
//!   [`refuses_each`] for a table of bad requests).
//! - [`logs`]: a process's log captured to a file ([`LogFile`]).
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a panic is a test failure.

pub mod cluster;
pub mod logs;
pub mod settings;
pub mod shipping;
pub mod spawn;
pub mod status;
pub mod user;

pub use cluster::{Cluster, ClusterBuilder};
pub use logs::LogFile;
pub use settings::UNCAPPED;
pub use shipping::sample;
pub use spawn::channel;
pub use status::{assert_status, refused, refuses_each};

use shippy_proto::user::v1::{GetPublicKeysRequest, User, user_service_client::UserServiceClient};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

/// The password of every account tests create.
pub const PASSWORD: &str = "correct horse battery";
/// The administrator every test's user-service has (`ADMIN_EMAILS`).
pub const ADMIN: &str = "admin@example.com";

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    with_metadata(
        Request::new(message),
        "authorization",
        &format!("Bearer {token}"),
    )
}

/// `message` with the services' shared `x-service-token`.
pub fn as_service<T>(message: T) -> Request<T> {
    with_metadata(
        Request::new(message),
        "x-service-token",
        shippy_testkit::SERVICE_TOKEN,
    )
}

/// `request` with `key: value` added to its metadata.
pub fn with_metadata<T>(mut request: Request<T>, key: &'static str, value: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert(key, MetadataValue::try_from(value).unwrap());
    request
}

/// The account `email` with [`PASSWORD`], as a login sends it.
fn with_password(email: &str) -> User {
    User {
        email: email.into(),
        password: PASSWORD.into(),
        ..Default::default()
    }
}

/// Creates the account `name` <`email`> (of Shippy Ltd, with [`PASSWORD`])
/// at the user-service behind `users`; answers its id.
pub async fn create_user(users: Channel, name: &str, email: &str) -> String {
    UserServiceClient::new(users)
        .create(User {
            name: name.into(),
            company: "Shippy Ltd".into(),
            ..with_password(email)
        })
        .await
        .expect("create user")
        .into_inner()
        .user
        .expect("a user")
        .id
}

/// The kids of the keys the user-service behind `users` publishes, the
/// signing one first.
pub async fn published_kids(users: Channel) -> Vec<String> {
    UserServiceClient::new(users)
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .expect("the public keys")
        .into_inner()
        .keys
        .into_iter()
        .map(|key| key.kid)
        .collect()
}

/// Logs `email` in with [`PASSWORD`] at the user-service behind `users`;
/// answers the token.
pub async fn login(users: Channel, email: &str) -> String {
    UserServiceClient::new(users)
        .auth(with_password(email))
        .await
        .expect("log in")
        .into_inner()
        .token
}
