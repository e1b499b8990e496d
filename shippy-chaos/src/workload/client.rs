//! One simulated client: its own seeded generator, the accounts it signed
//! up, and each operation it runs (sign up, log in, create, cancel, list),
//! through gRPC or the api-gateway, recorded as invoke and outcome.

use std::{
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
        CancelRequest, Consignment, Container, shipping_service_client::ShippingServiceClient,
    },
    user::v1::{User, user_service_client::UserServiceClient},
};
use tonic::transport::Channel;

use super::{Endpoints, Load, Outcome, authorized, channel, grpc_outcome, http_outcome, list_all};
use crate::{
    cluster::PASSWORD,
    history::{Kind, Recorder},
    http::Gateway,
};

#[derive(Debug)]
struct Account {
    email: String,
    token: Option<String>,
    /// Consignments created OK and not cancelled (to cancel some).
    live: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Client {
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
    pub(super) fn new(
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

    /// The current account's email and token, once it has logged in.
    fn signed_in(&self) -> Option<(String, String)> {
        let account = self.account.as_ref()?;
        Some((account.email.clone(), account.token.clone()?))
    }

    pub(super) async fn run(mut self, stop: Arc<AtomicBool>) {
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
        let Some((email, token)) = self.signed_in() else {
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
        let Some((email, token)) = self.signed_in() else {
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
