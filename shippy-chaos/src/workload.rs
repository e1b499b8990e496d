//! The workload: concurrent clients signing up, logging in, creating
//! consignments of mixed sizes (with idempotency keys, retried with the same
//! key when the answer was lost, as `consignment-cli` does), cancelling and
//! listing — some through gRPC, some through the api-gateway's JSON API —
//! each operation recorded in the history. One client's operations are in
//! `workload/client.rs`.

mod client;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use serde_json::{Value, json};
use shippy_proto::{
    consignment::v1::{GetRequest, shipping_service_client::ShippingServiceClient},
    user::v1::{User, user_service_client::UserServiceClient},
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use tonic::transport::Channel;

use self::client::Client;
use crate::{
    cluster::{ADMIN, FLEET, PASSWORD},
    history::{Kind, Recorder},
};

/// Where the clients connect.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// user-service.
    pub users: SocketAddr,
    /// consignment-service.
    pub shipping: SocketAddr,
    /// vessel-service.
    pub vessels: SocketAddr,
    /// The api-gateway.
    pub gateway: SocketAddr,
}

/// How much load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Clients calling through gRPC.
    pub grpc_clients: usize,
    /// Clients calling through the api-gateway.
    pub http_clients: usize,
    /// The run's seed (each client's generator derives from it).
    pub seed: u64,
    /// How long a call may take before it counts as indeterminate.
    pub call_timeout: Duration,
    /// Pause between one client's operations (at most).
    pub think: Duration,
}

/// What came of one call.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done; with what it answered.
    Ok(Value),
    /// Refused: nothing was done.
    Fail(String),
    /// Timed out or lost: perhaps done.
    Indeterminate(String),
}

impl Outcome {
    fn kind(&self) -> Kind {
        match self {
            Self::Ok(_) => Kind::Ok,
            Self::Fail(_) => Kind::Fail,
            Self::Indeterminate(_) => Kind::Indeterminate,
        }
    }

    fn result(&self) -> Value {
        match self {
            Self::Ok(value) => value.clone(),
            Self::Fail(error) | Self::Indeterminate(error) => json!({ "error": error }),
        }
    }
}

/// A gRPC status as an outcome: codes that say the request was refused are
/// definite failures; anything that may have happened half-way is not.
pub fn grpc_outcome(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let text = format!("{:?}: {}", status.code(), excerpt(status.message()));
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::Unimplemented => Outcome::Fail(text),
        _ => Outcome::Indeterminate(text),
    }
}

/// An HTTP answer as an outcome (the gateway maps gRPC codes to statuses;
/// 409 is also `ABORTED`, which may have happened).
pub fn http_outcome(status: u16, body: &Value) -> Outcome {
    let text = format!("{status}: {}", excerpt(&body.to_string()));
    match status {
        200..=299 => Outcome::Ok(body.clone()),
        409 if body.to_string().contains("ABORTED") => Outcome::Indeterminate(text),
        400..=499 => Outcome::Fail(text),
        _ => Outcome::Indeterminate(text),
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

fn channel(address: SocketAddr) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy(),
    )
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Signs the administrator up and creates the fleet ([`FLEET`]); the
/// vessels' ids.
pub async fn create_fleet(endpoints: Endpoints) -> anyhow::Result<Vec<String>> {
    let mut users = UserServiceClient::new(channel(endpoints.users)?);
    users
        .create(User {
            name: "Chaos Admin".into(),
            email: ADMIN.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await?;
    let token = login(endpoints.users, ADMIN).await?;
    let mut vessels = VesselServiceClient::new(channel(endpoints.vessels)?);
    let mut ids = Vec::new();
    for (n, (capacity, max_weight)) in FLEET.into_iter().enumerate() {
        let vessel = vessels
            .create(authorized(
                Vessel {
                    name: format!("Chaos {n}"),
                    capacity,
                    max_weight,
                    ..Default::default()
                },
                &token,
            ))
            .await?
            .into_inner()
            .vessel
            .map(|vessel| vessel.id)
            .unwrap_or_default();
        ids.push(vessel);
    }
    Ok(ids)
}

/// Runs every client until `stop` is set; returns when all have stopped.
pub async fn run(endpoints: Endpoints, load: Load, recorder: Recorder, stop: Arc<AtomicBool>) {
    let mut tasks = Vec::new();
    for n in 0..load.grpc_clients + load.http_clients {
        let client = match Client::new(n, n < load.http_clients, endpoints, load, &recorder) {
            Ok(client) => client,
            Err(error) => {
                eprintln!("client {n} could not start: {error}");
                continue;
            }
        };
        tasks.push(tokio::spawn(client.run(stop.clone())));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Every consignment `token`'s owner is listed, through every page.
pub async fn list_all(
    mut shipping: ShippingServiceClient<Channel>,
    token: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut ids = Vec::new();
    // The first page has no token; each page names the next, the last none.
    let mut next = Some(String::new());
    while let Some(page_token) = next {
        let request = GetRequest {
            page_size: 100,
            page_token,
        };
        let answer = shipping
            .get_consignments(authorized(request, token))
            .await?
            .into_inner();
        ids.extend(answer.consignments.into_iter().map(|c| c.id));
        next = Some(answer.next_page_token).filter(|token| !token.is_empty());
    }
    Ok(ids)
}

/// Logs `email` in through gRPC; its token.
pub async fn login(users: SocketAddr, email: &str) -> Result<String, tonic::Status> {
    let channel = channel(users).map_err(|error| tonic::Status::internal(error.to_string()))?;
    Ok(UserServiceClient::new(channel)
        .auth(User {
            email: email.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .token)
}

/// A connection to consignment-service, for the checker's listings.
pub fn shipping_client(address: SocketAddr) -> anyhow::Result<ShippingServiceClient<Channel>> {
    Ok(ShippingServiceClient::new(channel(address)?))
}
