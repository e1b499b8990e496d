//! What the scenarios need before any is measured: connections, accounts,
//! a vessel with room for every creation, a lister with 20 consignments.

use std::sync::Arc;

use anyhow::Context;
use shippy_proto::{
    consignment::v1::{
        Consignment, Container, GetRequest, shipping_service_client::ShippingServiceClient,
    },
    user::v1::{User, user_service_client::UserServiceClient},
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{Args, h2load};

/// Every benchmark account's password.
pub const PASSWORD: &str = "benchmark password";

/// Connections to spread the load over.
const CONNECTIONS: usize = 4;

/// The accounts and connections the scenarios run with.
#[derive(Debug)]
pub struct Fixtures {
    pub users: Vec<Channel>,
    pub shipping: Vec<Channel>,
    pub echo: Vec<Channel>,
    /// A user's token, for ValidateToken.
    pub token: String,
    /// The accounts the login flood logs in as, in turn.
    pub auth_emails: Arc<Vec<String>>,
    /// The token of the owner of 20 consignments, for GetConsignments.
    pub lister: String,
    /// The token of a user who makes the sample creations.
    pub creator: String,
}

impl Fixtures {
    pub async fn prepare(args: &Args) -> anyhow::Result<Self> {
        let users = channels(&args.users).await?;
        let shipping = channels(&args.shipping).await?;
        let echo = channels(&args.echo).await?;
        let (_, token) = user(&users[0], "validate").await?;
        // Logins spread over accounts, as a flood of people logging in is:
        // one account with 16 logins in flight is a password-guessing
        // pattern, and user-service's throttle refuses it (which the flood
        // must not measure).
        let mut auth_emails = Vec::new();
        for _ in 0..args.auth_concurrency {
            auth_emails.push(user(&users[0], "auth").await?.0);
        }
        let (_, lister) = user(&users[0], "lister").await?;
        roomy_vessel(&users[0], &args.vessels, &args.admin_email).await?;
        for _ in 0..20 {
            ShippingServiceClient::new(shipping[0].clone())
                .create_consignment(bearer(consignment(), &lister))
                .await
                .context("create the lister's 20 consignments")?;
        }
        let creator = user(&users[0], "sample").await?.1;
        Ok(Self {
            users,
            shipping,
            echo,
            token,
            auth_emails: Arc::new(auth_emails),
            lister,
            creator,
        })
    }
}

async fn channels(url: &str) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

pub fn consignment() -> Consignment {
    Consignment {
        description: "Benchmark consignment".into(),
        // Light, so the roomy vessel (i32::MAX kg) takes millions of them.
        weight: 100,
        containers: (1..=3)
            .map(|n| Container {
                customer_id: format!("cust00{n}"),
                origin: "Manchester, United Kingdom".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Signs up as `admin_email` (an admin by user-service's ADMIN_EMAILS) and
/// adds a vessel with room for any number of benchmark consignments.
async fn roomy_vessel(users: &Channel, vessels: &str, admin_email: &str) -> anyhow::Result<()> {
    let mut client = UserServiceClient::new(users.clone());
    let admin = User {
        name: "Bench Admin".into(),
        email: admin_email.into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    client
        .create(admin.clone())
        .await
        .context("sign up as the admin")?;
    let token = client
        .auth(admin)
        .await
        .context("log in as the admin")?
        .into_inner()
        .token;
    let channel = Endpoint::from_shared(vessels.to_owned())?.connect().await?;
    VesselServiceClient::new(channel)
        .create(bearer(
            Vessel {
                id: "bench-roomy".into(),
                name: "Benchmark Roomy".into(),
                capacity: i32::MAX,
                max_weight: i32::MAX,
                ..Default::default()
            },
            &token,
        ))
        .await
        .context("add the benchmark's vessel (is --admin-email in ADMIN_EMAILS?)")?;
    Ok(())
}

/// Creates a user and returns its email and token.
pub async fn user(users: &Channel, tag: &str) -> anyhow::Result<(String, String)> {
    static USERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = USERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let email = format!("bench-{tag}-{}-{number}@example.com", std::process::id());
    let mut client = UserServiceClient::new(users.clone());
    client
        .create(User {
            name: format!("Bench {tag}"),
            email: email.clone(),
            password: PASSWORD.to_owned(),
            ..Default::default()
        })
        .await
        .context("create a benchmark user")?;
    let token = client
        .auth(User {
            email: email.clone(),
            password: PASSWORD.to_owned(),
            ..Default::default()
        })
        .await
        .context("log the benchmark user in")?
        .into_inner()
        .token;
    Ok((email, token))
}

/// How many confirmed consignments the holder of `token` has.
pub async fn count_consignments(shipping: &Channel, token: &str) -> anyhow::Result<u64> {
    let mut client = ShippingServiceClient::new(shipping.clone());
    let (mut count, mut page_token) = (0u64, String::new());
    loop {
        let page = client
            .get_consignments(bearer(
                GetRequest {
                    page_size: 100,
                    page_token,
                },
                token,
            ))
            .await
            .context("count the creator's consignments")?
            .into_inner();
        count += page.consignments.len() as u64;
        if page.next_page_token.is_empty() {
            return Ok(count);
        }
        page_token = page.next_page_token;
    }
}

/// The encoded size (gRPC frame included) of `call`'s answer, asked once
/// through tonic: what h2load's answers must add up to.
pub fn answer_size<M: prost::Message>(
    answer: Result<tonic::Response<M>, Status>,
) -> anyhow::Result<u64> {
    let answer = answer.context("a sample call")?.into_inner();
    Ok(h2load::frame(&answer).len() as u64)
}
