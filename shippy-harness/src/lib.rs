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
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a panic is a test failure.

pub mod cluster;
pub mod settings;
pub mod spawn;
pub mod user;

pub use cluster::{Cluster, ClusterBuilder};
pub use settings::UNCAPPED;
pub use spawn::channel;

use shippy_proto::user::v1::{User, user_service_client::UserServiceClient};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

/// The password of every account tests create.
pub const PASSWORD: &str = "correct horse battery";
/// The administrator every test's user-service has (`ADMIN_EMAILS`).
pub const ADMIN: &str = "admin@example.com";

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

/// Logs `email` in with [`PASSWORD`] at the user-service behind `users`;
/// answers the token.
pub async fn login(users: Channel, email: &str) -> String {
    UserServiceClient::new(users)
        .auth(User {
            email: email.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("log in")
        .into_inner()
        .token
}
