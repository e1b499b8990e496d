//! The workload: concurrent clients signing up, logging in, creating
//! consignments of mixed sizes (with idempotency keys, retried with the same
//! key when the answer was lost, as `consignment-cli` does), cancelling and
//! listing — some through gRPC, some through the api-gateway's JSON API —
//! each operation recorded in the history.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::{Value, json};
use shippy_proto::{
    consignment::v1::{
        CancelRequest, Consignment, Container, GetRequest,
        shipping_service_client::ShippingServiceClient,
    },
    user::v1::{User, user_service_client::UserServiceClient},
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use tonic::transport::Channel;

use crate::{
    cluster::{ADMIN, FLEET, PASSWORD},
    history::{Kind, Recorder},
    http::Gateway,
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

#[derive(Debug)]
struct Account {
    email: String,
    token: Option<String>,
    /// Consignments created OK and not cancelled (to cancel some).
    live: Vec<String>,
}

#[derive(Debug)]
struct Client {
    name: String,
    http: bool,
    seq: u64,
    rng: StdRng,
    recorder: Recorder,
    users: UserServiceClient<Channel>,
    shipping: ShippingServiceClient<Channel>,
    gateway: Gateway,
    timeout: Duration,
    think: Duration,
    account: Option<Account>,
    /// Accounts signed up before the current one, with consignments left.
    earlier: Vec<Account>,
    signups: u32,
}

impl Client {
    fn new(
        n: usize,
        http: bool,
        endpoints: Endpoints,
        load: Load,
        recorder: &Recorder,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: format!("c{n}"),
            http,
            seq: 0,
            rng: StdRng::seed_from_u64(
                load.seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(n as u64 + 1)),
            ),
            recorder: recorder.clone(),
            users: UserServiceClient::new(channel(endpoints.users)?),
            shipping: ShippingServiceClient::new(channel(endpoints.shipping)?),
            gateway: Gateway::new(endpoints.gateway),
            timeout: load.call_timeout,
            think: load.think,
            account: None,
            earlier: Vec::new(),
            signups: 0,
        })
    }

    fn via(&self) -> &'static str {
        if self.http { "http" } else { "grpc" }
    }

    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let needs_account = self
                .account
                .as_ref()
                .is_none_or(|account| account.token.is_none());
            let roll: f64 = self.rng.random();
            if needs_account || roll < 0.03 {
                self.sign_up().await;
            } else if roll < 0.10 {
                self.login().await;
            } else if roll < 0.55 {
                self.create().await;
            } else if roll < 0.80 {
                self.cancel().await;
            } else {
                self.list().await;
            }
            let think = self.rng.random_range(0..=self.think.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
    }

    /// Records the invoke, runs `call` under the timeout, records its outcome.
    async fn op<F>(&mut self, op: &str, args: Value, call: F) -> Outcome
    where
        F: std::future::Future<Output = Outcome>,
    {
        self.seq += 1;
        let seq = self.seq;
        let via = self.via();
        self.recorder.record(
            &self.name,
            seq,
            Kind::Invoke,
            op,
            via,
            args.clone(),
            Value::Null,
        );
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Indeterminate(format!("no answer within {:?}", self.timeout)),
        };
        self.recorder.record(
            &self.name,
            seq,
            outcome.kind(),
            op,
            via,
            args,
            outcome.result(),
        );
        outcome
    }

    async fn sign_up(&mut self) {
        self.signups += 1;
        let email = format!("{}-{}@chaos.example", self.name, self.signups);
        let args = json!({ "email": email });
        let mut created = false;
        for _ in 0..3 {
            let outcome = if self.http {
                let gateway = self.gateway.clone();
                let body = json!({ "name": "Chaos Client", "email": email, "password": PASSWORD });
                self.op("signup", args.clone(), async move {
                    match gateway
                        .call(http::Method::POST, "/api/v1/users", &[], Some(&body))
                        .await
                    {
                        Ok(answer) => match http_outcome(answer.status, &answer.body) {
                            Outcome::Ok(body) => Outcome::Ok(json!({ "id": body["user"]["id"] })),
                            other => other,
                        },
                        Err(error) => Outcome::Indeterminate(error.to_string()),
                    }
                })
                .await
            } else {
                let mut users = self.users.clone();
                let user = User {
                    name: "Chaos Client".into(),
                    email: email.clone(),
                    password: PASSWORD.into(),
                    ..Default::default()
                };
                self.op("signup", args.clone(), async move {
                    match users.create(user).await {
                        Ok(answer) => Outcome::Ok(json!({
                            "id": answer.into_inner().user.map(|user| user.id).unwrap_or_default()
                        })),
                        Err(status) => grpc_outcome(&status),
                    }
                })
                .await
            };
            match outcome {
                Outcome::Ok(_) => {
                    created = true;
                    break;
                }
                // After a lost answer, "already exists" means it was made.
                Outcome::Fail(error)
                    if error.contains("AlreadyExists") || error.starts_with("409") =>
                {
                    created = true;
                    break;
                }
                Outcome::Fail(_) => break,
                Outcome::Indeterminate(_) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        // The account before keeps its consignments, to cancel some later
        // (else a full fleet would stay full).
        if let Some(old) = self.account.take()
            && old.token.is_some()
            && !old.live.is_empty()
        {
            self.earlier.push(old);
        }
        // Indeterminate three times: it may exist; logging in tells.
        self.account = Some(Account {
            email,
            token: None,
            live: Vec::new(),
        });
        let _ = created;
        self.login().await;
    }

    async fn login(&mut self) {
        let Some(email) = self.account.as_ref().map(|account| account.email.clone()) else {
            return;
        };
        let args = json!({ "email": email });
        let outcome = if self.http {
            let gateway = self.gateway.clone();
            let body = json!({ "email": email, "password": PASSWORD });
            self.op("login", args, async move {
                match gateway
                    .call(http::Method::POST, "/api/v1/login", &[], Some(&body))
                    .await
                {
                    Ok(answer) => http_outcome(answer.status, &answer.body),
                    Err(error) => Outcome::Indeterminate(error.to_string()),
                }
            })
            .await
        } else {
            let mut users = self.users.clone();
            let user = User {
                email: email.clone(),
                password: PASSWORD.into(),
                ..Default::default()
            };
            self.op("login", args, async move {
                match users.auth(user).await {
                    Ok(answer) => {
                        let token = answer.into_inner();
                        Outcome::Ok(json!({ "token": token.token, "user_id": token.user_id }))
                    }
                    Err(status) => grpc_outcome(&status),
                }
            })
            .await
        };
        match outcome {
            Outcome::Ok(body) => {
                if let (Some(account), Some(token)) =
                    (self.account.as_mut(), body["token"].as_str())
                {
                    account.token = Some(token.to_owned());
                }
            }
            // No such account (its sign-up never happened): start over.
            Outcome::Fail(error)
                if error.contains("Unauthenticated") || error.starts_with("401") =>
            {
                self.account = None;
            }
            _ => {}
        }
    }

    async fn create(&mut self) {
        let Some((email, token)) = self
            .account
            .as_ref()
            .and_then(|account| Some((account.email.clone(), account.token.clone()?)))
        else {
            return;
        };
        let key = uuid::Uuid::new_v4().to_string();
        // Mostly small; one in ten larger than any vessel.
        let containers: usize = if self.rng.random_bool(0.1) {
            self.rng.random_range(201..=260)
        } else {
            self.rng.random_range(1..=8)
        };
        let weight = i32::try_from(containers).unwrap_or(1) * self.rng.random_range(200..=1500);
        let description = format!("chaos {} {}", self.name, self.seq + 1);
        let args = json!({
            "email": email, "key": key, "containers": containers, "weight": weight,
        });
        for attempt in 0..3 {
            let outcome = if self.http {
                let gateway = self.gateway.clone();
                let body = json!({
                    "description": description,
                    "weight": weight,
                    "containers": (0..containers)
                        .map(|n| json!({ "customer_id": "chaos", "origin": format!("port {n}") }))
                        .collect::<Vec<_>>(),
                });
                let headers = [
                    ("authorization", format!("Bearer {token}")),
                    ("idempotency-key", key.clone()),
                ];
                self.op("create", args.clone(), async move {
                    match gateway
                        .call(
                            http::Method::POST,
                            "/api/v1/consignments",
                            &headers,
                            Some(&body),
                        )
                        .await
                    {
                        Ok(answer) => match http_outcome(answer.status, &answer.body) {
                            Outcome::Ok(body) => Outcome::Ok(json!({
                                "id": body["consignment"]["id"],
                                "vessel_id": body["consignment"]["vessel_id"],
                            })),
                            other => other,
                        },
                        Err(error) => Outcome::Indeterminate(error.to_string()),
                    }
                })
                .await
            } else {
                let mut shipping = self.shipping.clone();
                let mut request = authorized(
                    Consignment {
                        description: description.clone(),
                        weight,
                        containers: (0..containers)
                            .map(|n| Container {
                                customer_id: "chaos".into(),
                                origin: format!("port {n}"),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                    &token,
                );
                if let Ok(value) = key.parse() {
                    request.metadata_mut().insert("idempotency-key", value);
                }
                self.op("create", args.clone(), async move {
                    match shipping.create_consignment(request).await {
                        Ok(answer) => {
                            let consignment = answer.into_inner().consignment.unwrap_or_default();
                            Outcome::Ok(json!({
                                "id": consignment.id, "vessel_id": consignment.vessel_id,
                            }))
                        }
                        Err(status) => grpc_outcome(&status),
                    }
                })
                .await
            };
            match outcome {
                Outcome::Ok(body) => {
                    if let (Some(account), Some(id)) = (self.account.as_mut(), body["id"].as_str())
                    {
                        account.live.push(id.to_owned());
                    }
                    return;
                }
                Outcome::Fail(_) => return,
                Outcome::Indeterminate(_) if attempt < 2 => {
                    let wait = self.rng.random_range(200..=1000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Outcome::Indeterminate(_) => return,
            }
        }
    }

    async fn cancel(&mut self) {
        // One of this client's consignments, of any of its accounts.
        let mut owners: Vec<&mut Account> = self
            .account
            .iter_mut()
            .chain(self.earlier.iter_mut())
            .filter(|account| account.token.is_some() && !account.live.is_empty())
            .collect();
        if owners.is_empty() {
            return self.list().await;
        }
        let which = self.rng.random_range(0..owners.len());
        let account = &mut owners[which];
        let at = self.rng.random_range(0..account.live.len());
        let id = account.live.swap_remove(at);
        let email = account.email.clone();
        let token = account.token.clone().unwrap_or_default();
        let args = json!({ "email": email, "id": id });
        let _ = if self.http {
            let gateway = self.gateway.clone();
            let path = format!("/api/v1/consignments/{id}");
            let headers = [("authorization", format!("Bearer {token}"))];
            self.op("cancel", args, async move {
                match gateway
                    .call(http::Method::DELETE, &path, &headers, None)
                    .await
                {
                    Ok(answer) => match http_outcome(answer.status, &answer.body) {
                        Outcome::Ok(_) => Outcome::Ok(json!({ "id": id })),
                        other => other,
                    },
                    Err(error) => Outcome::Indeterminate(error.to_string()),
                }
            })
            .await
        } else {
            let mut shipping = self.shipping.clone();
            let request = authorized(CancelRequest { id: id.clone() }, &token);
            self.op("cancel", args, async move {
                match shipping.cancel_consignment(request).await {
                    Ok(_) => Outcome::Ok(json!({ "id": id })),
                    Err(status) => grpc_outcome(&status),
                }
            })
            .await
        };
    }

    async fn list(&mut self) {
        let Some((email, token)) = self
            .account
            .as_ref()
            .and_then(|account| Some((account.email.clone(), account.token.clone()?)))
        else {
            return;
        };
        let args = json!({ "email": email });
        if self.http {
            let gateway = self.gateway.clone();
            let headers = [("authorization", format!("Bearer {token}"))];
            self.op("list", args, async move {
                let mut ids = Vec::new();
                let mut page = String::new();
                loop {
                    let path = format!("/api/v1/consignments?page_size=100&page_token={page}");
                    match gateway.call(http::Method::GET, &path, &headers, None).await {
                        Ok(answer) => match http_outcome(answer.status, &answer.body) {
                            Outcome::Ok(body) => {
                                for consignment in
                                    body["consignments"].as_array().into_iter().flatten()
                                {
                                    ids.push(consignment["id"].clone());
                                }
                                page = body["next_page_token"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned();
                                if page.is_empty() {
                                    return Outcome::Ok(json!({ "ids": ids }));
                                }
                            }
                            other => return other,
                        },
                        Err(error) => return Outcome::Indeterminate(error.to_string()),
                    }
                }
            })
            .await;
        } else {
            let shipping = self.shipping.clone();
            self.op("list", args, async move {
                match list_all(shipping, &token).await {
                    Ok(ids) => Outcome::Ok(json!({ "ids": ids })),
                    Err(status) => grpc_outcome(&status),
                }
            })
            .await;
        }
    }
}

/// Every consignment `token`'s owner is listed, through every page.
pub async fn list_all(
    mut shipping: ShippingServiceClient<Channel>,
    token: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let answer = shipping
            .get_consignments(authorized(
                GetRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                },
                token,
            ))
            .await?
            .into_inner();
        ids.extend(
            answer
                .consignments
                .into_iter()
                .map(|consignment| consignment.id),
        );
        page_token = answer.next_page_token;
        if page_token.is_empty() {
            return Ok(ids);
        }
    }
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
