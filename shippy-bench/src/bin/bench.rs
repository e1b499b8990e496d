//! The load generator of `make bench`: drives the bare echo server (the
//! baseline) and the services with the same concurrency, and reports each
//! scenario's throughput, latency and errors, and its ratio to the baseline
//! measured in the same run, as JSON and as an SVG chart.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use shippy_proto::{
    bench::v1::{EchoRequest, echo_service_client::EchoServiceClient},
    consignment::v1::{
        Consignment, Container, GetRequest, shipping_service_client::ShippingServiceClient,
    },
    user::v1::{Token, User, user_service_client::UserServiceClient},
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

#[derive(Debug, Parser)]
struct Args {
    /// The echo server (baseline).
    #[arg(long)]
    echo: String,
    /// user-service.
    #[arg(long)]
    users: String,
    /// consignment-service.
    #[arg(long)]
    shipping: String,
    /// vessel-service: the bench adds a vessel with room for every
    /// consignment it creates (the seed fleet takes only a few).
    #[arg(long)]
    vessels: String,
    /// An email in user-service's ADMIN_EMAILS: the bench signs up with it
    /// to add that vessel.
    #[arg(long)]
    admin_email: String,
    /// How long each scenario is measured, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Requests in flight for GetConsignments while Auth saturates the service.
    #[arg(long, default_value_t = 4)]
    probe_concurrency: usize,
    /// The bcrypt cost user-service runs with.
    #[arg(long, default_value_t = 12)]
    bcrypt_cost: u32,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results.json")]
    json: PathBuf,
    /// Where the chart goes.
    #[arg(long, default_value = "bench/results.svg")]
    svg: PathBuf,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    name: String,
    concurrency: usize,
    requests: u64,
    errors: u64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    ratio_to_echo: f64,
}

#[derive(Debug, Serialize)]
struct Goal {
    goal: String,
    target: f64,
    measured: f64,
    met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    cores: usize,
    seconds_per_scenario: u64,
    bcrypt_cost: u32,
    bcrypt_verify_ms: f64,
    scenarios: Vec<Figures>,
    auth_saturated_get_consignments: Figures,
    goals: Vec<Goal>,
}

/// An empty latency histogram (microseconds, 3 significant figures).
#[allow(clippy::expect_used)] // 3 significant figures is always a valid precision.
fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant figures")
}

/// Connections to spread the load over.
const CONNECTIONS: usize = 4;

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

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Runs `call` from `concurrency` workers for `duration` (after a short
/// warm-up), and measures.
async fn measure<F, Fut>(
    name: &str,
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
    call: F,
) -> Figures
where
    F: Fn(Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send,
{
    let call = Arc::new(call);
    let warm_up = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warm_up;
    let end = measure_from + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let channel = channels[worker % channels.len()].clone();
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = histogram();
            let (mut requests, mut errors) = (0u64, 0u64);
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let result = call(channel.clone()).await;
                if began >= measure_from {
                    requests += 1;
                    if result.is_err() {
                        errors += 1;
                    }
                    let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = histogram.record(micros.max(1));
                }
            }
            (histogram, requests, errors)
        }));
    }
    let mut histogram = histogram();
    let (mut requests, mut errors) = (0u64, 0u64);
    for worker in workers {
        if let Ok((worker_histogram, worker_requests, worker_errors)) = worker.await {
            let _ = histogram.add(worker_histogram);
            requests += worker_requests;
            errors += worker_errors;
        }
    }
    let figures = Figures {
        name: name.to_owned(),
        concurrency,
        requests,
        errors,
        requests_per_second: requests as f64 / duration.as_secs_f64(),
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        ratio_to_echo: 0.0,
    };
    eprintln!(
        "{:<32} {:>9.0} req/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}",
        figures.name, figures.requests_per_second, figures.p50_ms, figures.p99_ms, figures.errors
    );
    figures
}

fn consignment() -> Consignment {
    Consignment {
        description: "Benchmark consignment".into(),
        weight: 55_000,
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
async fn roomy_vessel(
    users: &Channel,
    vessels: &str,
    admin_email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let mut client = UserServiceClient::new(users.clone());
    let admin = User {
        name: "Bench Admin".into(),
        email: admin_email.into(),
        password: password.into(),
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

/// Creates a user and returns its token.
async fn user(users: &Channel, tag: &str, password: &str) -> anyhow::Result<(String, String)> {
    let email = format!("bench-{tag}-{}@example.com", std::process::id());
    let mut client = UserServiceClient::new(users.clone());
    client
        .create(User {
            name: format!("Bench {tag}"),
            email: email.clone(),
            password: password.to_owned(),
            ..Default::default()
        })
        .await
        .context("create a benchmark user")?;
    let token = client
        .auth(User {
            email: email.clone(),
            password: password.to_owned(),
            ..Default::default()
        })
        .await
        .context("log the benchmark user in")?
        .into_inner()
        .token;
    Ok((email, token))
}

fn bcrypt_verify_time(cost: u32) -> anyhow::Result<Duration> {
    let hash = bcrypt::hash("benchmark password", cost)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        bcrypt::verify("benchmark password", &hash)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn svg(report: &Report) -> String {
    let bars: Vec<(&str, f64)> = report
        .scenarios
        .iter()
        .map(|figures| (figures.name.as_str(), figures.ratio_to_echo))
        .collect();
    let (width, row, left) = (820.0, 34.0, 250.0);
    let height = 70.0 + row * bars.len() as f64;
    let scale = (width - left - 90.0) / bars.iter().map(|(_, ratio)| *ratio).fold(1.0, f64::max);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" font-size="15" font-weight="bold">Throughput as a ratio to a bare tonic echo server (same run, {} cores, concurrency {})</text>
"#,
        report.cores,
        report
            .scenarios
            .first()
            .map_or(0, |figures| figures.concurrency)
    );
    for (index, (name, ratio)) in bars.iter().enumerate() {
        let y = 44.0 + row * index as f64;
        let bar = (ratio * scale).max(1.0);
        out.push_str(&format!(
            r##"<text x="10" y="{}">{name}</text><rect x="{left}" y="{y}" width="{bar:.1}" height="22" fill="#4a7ab5"/><text x="{:.1}" y="{}">{ratio:.3}</text>
"##,
            y + 16.0,
            left + bar + 6.0,
            y + 16.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds);
    let echo = channels(&args.echo).await?;
    let users = channels(&args.users).await?;
    let shipping = channels(&args.shipping).await?;

    let password = "benchmark password";
    let (_, token) = user(&users[0], "validate", password).await?;
    let (auth_email, _) = user(&users[0], "auth", password).await?;
    let (_, lister) = user(&users[0], "lister", password).await?;
    let (_, creator) = user(&users[0], "creator", password).await?;
    roomy_vessel(&users[0], &args.vessels, &args.admin_email, password).await?;
    for _ in 0..20 {
        ShippingServiceClient::new(shipping[0].clone())
            .create_consignment(bearer(consignment(), &lister))
            .await
            .context("create the lister's 20 consignments")?;
    }

    let payload = vec![7u8; 64];
    let mut scenarios = vec![
        measure(
            "Echo (baseline)",
            &echo,
            args.concurrency,
            duration,
            move |channel| {
                let payload = payload.clone();
                async move {
                    EchoServiceClient::new(channel)
                        .echo(EchoRequest { payload })
                        .await
                        .map(drop)
                }
            },
        )
        .await,
    ];
    let validate_token = token.clone();
    scenarios.push(
        measure(
            "ValidateToken",
            &users,
            args.concurrency,
            duration,
            move |channel| {
                let token = validate_token.clone();
                async move {
                    UserServiceClient::new(channel)
                        .validate_token(Token {
                            token,
                            ..Default::default()
                        })
                        .await
                        .map(drop)
                }
            },
        )
        .await,
    );
    let list_token = lister.clone();
    let get_consignments = move |channel: Channel| {
        let token = list_token.clone();
        async move {
            let answer = ShippingServiceClient::new(channel)
                .get_consignments(bearer(
                    GetRequest {
                        page_size: 20,
                        page_token: String::new(),
                    },
                    &token,
                ))
                .await?;
            if answer.into_inner().consignments.len() == 20 {
                Ok(())
            } else {
                Err(Status::internal("expected 20 consignments"))
            }
        }
    };
    scenarios.push(
        measure(
            "GetConsignments (20 owned)",
            &shipping,
            args.concurrency,
            duration,
            get_consignments.clone(),
        )
        .await,
    );
    scenarios.push(
        measure(
            "CreateConsignment",
            &shipping,
            args.concurrency,
            duration,
            move |channel| {
                let token = creator.clone();
                async move {
                    ShippingServiceClient::new(channel)
                        .create_consignment(bearer(consignment(), &token))
                        .await
                        .map(drop)
                }
            },
        )
        .await,
    );
    let auth = {
        let email = auth_email.clone();
        move |channel: Channel| {
            let email = email.clone();
            async move {
                UserServiceClient::new(channel)
                    .auth(User {
                        email,
                        password: "benchmark password".into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
        }
    };
    scenarios.push(measure("Auth", &users, args.concurrency, duration, auth.clone()).await);

    // GetConsignments alone at the probe's concurrency, then again while
    // Auth keeps user-service's CPUs busy with bcrypt.
    let unloaded = measure(
        "GetConsignments (probe, alone)",
        &shipping,
        args.probe_concurrency,
        duration,
        get_consignments.clone(),
    )
    .await;
    let saturating = tokio::spawn({
        let users = users.clone();
        let concurrency = args.concurrency;
        async move { measure("Auth (saturating)", &users, concurrency, duration, auth).await }
    });
    let loaded = measure(
        "GetConsignments (probe, under Auth)",
        &shipping,
        args.probe_concurrency,
        duration,
        get_consignments,
    )
    .await;
    let _ = saturating.await;

    let echo_rps = scenarios[0].requests_per_second.max(1.0);
    for figures in &mut scenarios {
        figures.ratio_to_echo = figures.requests_per_second / echo_rps;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let verify = bcrypt_verify_time(args.bcrypt_cost)?;
    let ratio = |name: &str| {
        scenarios
            .iter()
            .find(|figures| figures.name.starts_with(name))
            .map_or(0.0, |figures| figures.ratio_to_echo)
    };
    let auth_rps = scenarios
        .iter()
        .find(|figures| figures.name == "Auth")
        .map_or(0.0, |figures| figures.requests_per_second);
    let auth_ceiling = cores as f64 / verify.as_secs_f64();
    let goal = |goal: &str, target: f64, measured: f64| Goal {
        goal: goal.to_owned(),
        target,
        measured,
        met: measured >= target,
    };
    let mut goals = vec![
        goal("ValidateToken / echo >= 0.5", 0.5, ratio("ValidateToken")),
        goal(
            "GetConsignments / echo >= 0.15",
            0.15,
            ratio("GetConsignments"),
        ),
        goal(
            "CreateConsignment / echo >= 0.08",
            0.08,
            ratio("CreateConsignment"),
        ),
        goal(
            "Auth req/s >= 0.9 x cores / bcrypt verify time",
            0.9 * auth_ceiling,
            auth_rps,
        ),
    ];
    let p99_limit = 3.0 * unloaded.p99_ms;
    goals.push(Goal {
        goal: "GetConsignments p99 under saturated Auth <= 3 x unloaded p99 (ms)".into(),
        target: p99_limit,
        measured: loaded.p99_ms,
        met: loaded.p99_ms <= p99_limit,
    });
    let mut unloaded = unloaded;
    unloaded.ratio_to_echo = unloaded.requests_per_second / echo_rps;
    let mut loaded = loaded;
    loaded.ratio_to_echo = loaded.requests_per_second / echo_rps;
    scenarios.push(unloaded);
    let report = Report {
        cores,
        seconds_per_scenario: args.seconds,
        bcrypt_cost: args.bcrypt_cost,
        bcrypt_verify_ms: verify.as_secs_f64() * 1000.0,
        scenarios,
        auth_saturated_get_consignments: loaded,
        goals,
    };
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(&args.svg, svg(&report))?;
    eprintln!();
    for goal in &report.goals {
        eprintln!(
            "{} {:<66} target {:>10.3}  measured {:>10.3}",
            if goal.met { "MET    " } else { "NOT MET" },
            goal.goal,
            goal.target,
            goal.measured
        );
    }
    eprintln!(
        "\nresults: {} and {}",
        args.json.display(),
        args.svg.display()
    );
    Ok(())
}
