//! The load generator of `make bench`: drives a bare echo server (the
//! baseline), our services and the Go peer (`bench/go-peer`) with h2load, in
//! interleaved rounds, and reports each scenario's throughput, latency, CPU
//! time per request of every process involved (from `/proc`), its ratio to
//! the echo and to the Go peer measured in the same round, as a table, JSON
//! and an SVG chart.

mod cpu;
mod h2load;
mod report;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use shippy_proto::{
    bench::v1::EchoRequest,
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

use crate::{
    cpu::Watched,
    h2load::{Call, Expect},
    report::{Figures, Goal, Probe, Report, RoundFigures},
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
    /// The Go peer of consignment-service (`bench/go-peer`), if it runs.
    #[arg(long)]
    go_shipping: Option<String>,
    /// vessel-service: the bench adds a vessel with room for every
    /// consignment it creates (the seed fleet takes only a few).
    #[arg(long)]
    vessels: String,
    /// An email in user-service's ADMIN_EMAILS: the bench signs up with it
    /// to add that vessel.
    #[arg(long)]
    admin_email: String,
    /// Processes whose CPU time is measured, as NAME=PID (NAME+=PID for a
    /// process and all it starts): echo-server, user-service,
    /// consignment-service, vessel-service, go-peer, postgres.
    #[arg(long = "pid", value_parser = Watched::parse)]
    pids: Vec<Watched>,
    /// How long each timed run lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds: each runs every scenario once, in turn.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// HTTP/2 connections of the load.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Requests in flight for the login-flood probe (GetConsignments alone,
    /// then while Auth saturates user-service).
    #[arg(long, default_value_t = 4)]
    probe_concurrency: usize,
    /// Requests in flight for Auth.
    #[arg(long, default_value_t = 16)]
    auth_concurrency: usize,
    /// The bcrypt cost user-service runs with.
    #[arg(long, default_value_t = 12)]
    bcrypt_cost: u32,
    /// What the code measured is (printed and kept in the JSON).
    #[arg(long, default_value = "")]
    label: String,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results.json")]
    json: PathBuf,
    /// Where the chart goes.
    #[arg(long, default_value = "bench/results.svg")]
    svg: PathBuf,
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
) -> Probe
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
            let (mut requests, mut shed, mut errors) = (0u64, 0u64, 0u64);
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let result = call(channel.clone()).await;
                if began < measure_from {
                    continue;
                }
                match result {
                    // Only answers count as throughput and latency.
                    Ok(()) => {
                        requests += 1;
                        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = histogram.record(micros.max(1));
                    }
                    // Load shed by the service (user-service's login throttle
                    // or its bounded bcrypt queue): what a flood is meant to
                    // meet, not a failure. A client told to retry shortly
                    // waits a little, as ours do, rather than spin.
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                        ) =>
                    {
                        shed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => errors += 1,
                }
            }
            (histogram, requests, shed, errors)
        }));
    }
    let mut histogram = histogram();
    let (mut requests, mut shed, mut errors) = (0u64, 0u64, 0u64);
    for worker in workers {
        if let Ok((worker_histogram, worker_requests, worker_shed, worker_errors)) = worker.await {
            let _ = histogram.add(worker_histogram);
            requests += worker_requests;
            shed += worker_shed;
            errors += worker_errors;
        }
    }
    let figures = Probe {
        name: name.to_owned(),
        concurrency,
        requests,
        shed,
        errors,
        requests_per_second: requests as f64 / duration.as_secs_f64(),
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
    };
    eprintln!(
        "  {:<32} {:>9.1} answered/s  p50 {:>8.2} ms  p99 {:>8.2} ms  shed {}  errors {}",
        figures.name,
        figures.requests_per_second,
        figures.p50_ms,
        figures.p99_ms,
        figures.shed,
        figures.errors
    );
    figures
}

fn consignment() -> Consignment {
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
    static USERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = USERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let email = format!("bench-{tag}-{}-{number}@example.com", std::process::id());
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

/// One thing to measure: an RPC, what each answer must carry, and the
/// processes that do the work.
#[derive(Debug)]
struct Scenario {
    name: &'static str,
    call: Call,
    expect: Expect,
    /// Names of watched processes: the serving one first.
    processes: &'static [&'static str],
    /// For creations: a fresh caller per timed run, whose consignments are
    /// counted afterwards (every answer must have stored one).
    creates: bool,
    /// The scenario this one is compared with (ours with the Go peer's).
    peer_of: Option<&'static str>,
}

const ECHO: &str = "Echo (baseline)";
const GET: &str = "GetConsignments (20 owned)";
const GET_GO: &str = "GetConsignments, Go peer";
const CREATE: &str = "CreateConsignment";
const CREATE_GO: &str = "CreateConsignment, Go peer";

/// The service's URL path of `method`.
fn url(base: &str, method: &str) -> String {
    format!("{}/{method}", base.trim_end_matches('/'))
}

/// How many confirmed consignments the holder of `token` has.
async fn count_consignments(shipping: &Channel, token: &str) -> anyhow::Result<u64> {
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
fn answer_size<M: prost::Message>(
    answer: Result<tonic::Response<M>, Status>,
) -> anyhow::Result<u64> {
    let answer = answer.context("a sample call")?.into_inner();
    Ok(h2load::frame(&answer).len() as u64)
}

/// Runs `scenario` once: a 1 s warm-up, then a timed run with the CPU time
/// of its processes read before and after.
async fn run_once(
    scenario: &Scenario,
    args: &Args,
    users: &Channel,
    shipping: &Channel,
    work: &std::path::Path,
    password: &str,
    ticks_per_second: f64,
) -> anyhow::Result<RoundFigures> {
    let log = work.join("h2load.log");
    let mut call = scenario.call.clone();
    let mut warm_up = call.clone();
    if scenario.creates {
        // Warm up as one caller, measure as a fresh one: its consignments
        // are exactly the timed run's.
        warm_up.token = Some(user(users, "warm-up", password).await?.1);
        call.token = Some(user(users, "creator", password).await?.1);
    }
    let (clients, streams, expect) = (args.clients, args.streams, scenario.expect);
    tokio::task::block_in_place(|| h2load::run(&warm_up, clients, streams, 1, expect, &log))
        .with_context(|| format!("{}: the warm-up", scenario.name))?;
    let watched: Vec<Watched> = scenario
        .processes
        .iter()
        .filter_map(|name| {
            args.pids
                .iter()
                .find(|process| process.name == *name)
                .cloned()
        })
        .collect();
    let before = cpu::sample(&watched);
    let started = Instant::now();
    let run = tokio::task::block_in_place(|| {
        h2load::run(&call, clients, streams, args.seconds, expect, &log)
    })
    .with_context(|| scenario.name)?;
    let wall = started.elapsed();
    let after = cpu::sample(&watched);
    if scenario.creates {
        let token = call.token.as_deref().unwrap_or_default();
        let stored = count_consignments(shipping, token).await?;
        // Requests cut off when the time was up may or may not have stored one.
        if stored < run.requests {
            bail!(
                "{}: {} answers, but only {stored} consignments stored",
                scenario.name,
                run.requests
            );
        }
    }
    let cpu_us = watched
        .iter()
        .map(|process| {
            let ticks = after[&process.name].saturating_sub(before[&process.name]);
            let micros = ticks as f64 * 1e6 / ticks_per_second / run.requests as f64;
            (process.name.clone(), micros)
        })
        .collect::<HashMap<_, _>>();
    let figures = RoundFigures {
        requests_per_second: run.requests as f64 / run.seconds,
        p50_ms: run.p50_ms,
        p99_ms: run.p99_ms,
        requests: run.requests,
        cpu_us,
        wall_seconds: wall.as_secs_f64(),
    };
    eprintln!(
        "  {:<30} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  CPU µs/request: {}",
        scenario.name,
        figures.requests_per_second,
        figures.p50_ms,
        figures.p99_ms,
        report::cpu_text(&figures.cpu_us, scenario.processes)
    );
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = std::env::temp_dir().join(format!("shippy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn bench(args: &Args, work: &std::path::Path) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let users = channels(&args.users).await?;
    let shipping = channels(&args.shipping).await?;
    let echo = channels(&args.echo).await?;

    let password = "benchmark password";
    let (_, token) = user(&users[0], "validate", password).await?;
    // Logins spread over accounts, as a flood of people logging in is: one
    // account with 16 logins in flight is a password-guessing pattern, and
    // user-service's throttle refuses it (which the flood must not measure).
    let mut auth_emails = Vec::new();
    for _ in 0..args.auth_concurrency {
        auth_emails.push(user(&users[0], "auth", password).await?.0);
    }
    let auth_emails = Arc::new(auth_emails);
    let (_, lister) = user(&users[0], "lister", password).await?;
    roomy_vessel(&users[0], &args.vessels, &args.admin_email, password).await?;
    for _ in 0..20 {
        ShippingServiceClient::new(shipping[0].clone())
            .create_consignment(bearer(consignment(), &lister))
            .await
            .context("create the lister's 20 consignments")?;
    }

    // The size of a good answer to each request, asked once.
    let echo_request = EchoRequest {
        payload: vec![7u8; 64],
    };
    let echo_size = answer_size(
        shippy_proto::bench::v1::echo_service_client::EchoServiceClient::new(echo[0].clone())
            .echo(echo_request.clone())
            .await,
    )?;
    let validate = Token {
        token: token.clone(),
        ..Default::default()
    };
    let validate_size = answer_size(
        UserServiceClient::new(users[0].clone())
            .validate_token(validate.clone())
            .await,
    )?;
    let list = GetRequest {
        page_size: 20,
        page_token: String::new(),
    };
    let ours = ShippingServiceClient::new(shipping[0].clone())
        .get_consignments(bearer(list.clone(), &lister))
        .await
        .context("list the lister's consignments")?
        .into_inner();
    if ours.consignments.len() != 20 {
        bail!(
            "the lister has {} consignments, not 20",
            ours.consignments.len()
        );
    }
    let list_size = h2load::frame(&ours).len() as u64;
    let creator = user(&users[0], "sample", password).await?.1;
    let create_size = answer_size(
        ShippingServiceClient::new(shipping[0].clone())
            .create_consignment(bearer(consignment(), &creator))
            .await,
    )?;
    // A created consignment's answer varies by a few bytes (its time's nanos).
    let create_expect = Expect::Between(create_size.saturating_sub(8), create_size + 8);

    let echo_body = work.join("echo");
    h2load::write_body(&echo_body, &echo_request)?;
    let validate_body = work.join("validate");
    h2load::write_body(&validate_body, &validate)?;
    let list_body = work.join("list");
    h2load::write_body(&list_body, &list)?;
    let create_body = work.join("create");
    h2load::write_body(&create_body, &consignment())?;
    let get_method = "shippy.consignment.v1.ShippingService/GetConsignments";
    let create_method = "shippy.consignment.v1.ShippingService/CreateConsignment";
    let mut scenarios = vec![
        Scenario {
            name: ECHO,
            call: Call {
                url: url(&args.echo, "shippy.bench.v1.EchoService/Echo"),
                body: echo_body,
                token: None,
            },
            expect: Expect::Exactly(echo_size),
            processes: &["echo-server"],
            creates: false,
            peer_of: None,
        },
        Scenario {
            name: "ValidateToken",
            call: Call {
                url: url(&args.users, "shippy.user.v1.UserService/ValidateToken"),
                body: validate_body,
                token: None,
            },
            expect: Expect::Exactly(validate_size),
            processes: &["user-service"],
            creates: false,
            peer_of: None,
        },
        Scenario {
            name: GET,
            call: Call {
                url: url(&args.shipping, get_method),
                body: list_body.clone(),
                token: Some(lister.clone()),
            },
            expect: Expect::Exactly(list_size),
            processes: &["consignment-service", "postgres"],
            creates: false,
            peer_of: Some(GET_GO),
        },
        Scenario {
            name: CREATE,
            call: Call {
                url: url(&args.shipping, create_method),
                body: create_body.clone(),
                token: None,
            },
            expect: create_expect,
            processes: &["consignment-service", "vessel-service", "postgres"],
            creates: true,
            peer_of: Some(CREATE_GO),
        },
    ];
    if let Some(go) = &args.go_shipping {
        let go_channel = channels(go).await?;
        let theirs = ShippingServiceClient::new(go_channel[0].clone())
            .get_consignments(bearer(list.clone(), &lister))
            .await
            .context("list the lister's consignments through the Go peer")?
            .into_inner();
        if theirs != ours {
            bail!(
                "the Go peer answers GetConsignments differently:\nours: {ours:?}\ntheirs: {theirs:?}"
            );
        }
        let go_create_size = answer_size(
            ShippingServiceClient::new(go_channel[0].clone())
                .create_consignment(bearer(consignment(), &creator))
                .await,
        )?;
        if go_create_size.abs_diff(create_size) > 8 {
            bail!(
                "the Go peer's CreateConsignment answer is {go_create_size} bytes, ours {create_size}"
            );
        }
        scenarios.insert(
            3,
            Scenario {
                name: GET_GO,
                call: Call {
                    url: url(go, get_method),
                    body: list_body,
                    token: Some(lister.clone()),
                },
                expect: Expect::Exactly(list_size),
                processes: &["go-peer", "postgres"],
                creates: false,
                peer_of: None,
            },
        );
        scenarios.push(Scenario {
            name: CREATE_GO,
            call: Call {
                url: url(go, create_method),
                body: create_body,
                token: None,
            },
            expect: create_expect,
            processes: &["go-peer", "vessel-service", "postgres"],
            creates: true,
            peer_of: None,
        });
    }

    let ticks_per_second = cpu::ticks_per_second();
    let mut rounds: Vec<Vec<RoundFigures>> = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round} of {}", args.rounds);
        let mut figures = Vec::new();
        for scenario in &scenarios {
            figures.push(
                run_once(
                    scenario,
                    args,
                    &users[0],
                    &shipping[0],
                    work,
                    password,
                    ticks_per_second,
                )
                .await?,
            );
        }
        rounds.push(figures);
    }
    let summaries: Vec<Figures> = scenarios
        .iter()
        .enumerate()
        .map(|(index, scenario)| {
            let peer = scenario
                .peer_of
                .and_then(|peer| scenarios.iter().position(|other| other.name == peer));
            Figures::from_rounds(scenario.name, scenario.processes, &rounds, index, 0, peer)
        })
        .collect();

    // The login flood: GetConsignments at a few in flight alone, then while
    // Auth keeps user-service's cores busy with bcrypt (tonic clients: these
    // are latency figures at low load, which h2load does not give per run).
    eprintln!("login flood");
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
    let auth = {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        move |channel: Channel| {
            let turn = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let email = auth_emails[turn % auth_emails.len()].clone();
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
    let auth_alone = measure(
        "Auth",
        &users,
        args.auth_concurrency,
        duration,
        auth.clone(),
    )
    .await;
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
        let concurrency = args.auth_concurrency;
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
    for probe in [&auth_alone, &unloaded, &loaded] {
        if probe.errors > 0 || probe.requests == 0 {
            bail!(
                "{}: {} of {} calls failed",
                probe.name,
                probe.errors,
                probe.requests
            );
        }
    }

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let verify = bcrypt_verify_time(args.bcrypt_cost)?;
    let figure = |name: &str| summaries.iter().find(|figures| figures.name == name);
    let mut goals = vec![Goal::at_least(
        "ValidateToken / echo",
        0.5,
        figure("ValidateToken").map_or(0.0, |figures| figures.ratio_to_echo),
    )];
    if let Some(get) = figure(GET) {
        goals.push(Goal::at_most(
            "GetConsignments: consignment-service CPU µs per request",
            45.0,
            get.cpu_us("consignment-service"),
        ));
        if let Some(ratio) = get.ratio_to_peer {
            goals.push(Goal::at_least("GetConsignments / Go peer", 1.3, ratio));
        }
    }
    if let Some(create) = figure(CREATE) {
        goals.push(Goal::at_most(
            "CreateConsignment: consignment- + vessel-service CPU µs per request",
            70.0,
            create.cpu_us("consignment-service") + create.cpu_us("vessel-service"),
        ));
        if let Some(ratio) = create.ratio_to_peer {
            goals.push(Goal::at_least("CreateConsignment / Go peer", 1.3, ratio));
        }
    }
    goals.push(Goal::at_least(
        "Auth req/s >= 0.9 x cores / bcrypt verify time",
        0.9 * cores as f64 / verify.as_secs_f64(),
        auth_alone.requests_per_second,
    ));
    goals.push(Goal::at_most(
        "GetConsignments p99 under an Auth flood / unloaded p99",
        3.0,
        loaded.p99_ms / unloaded.p99_ms.max(0.001),
    ));
    let report = Report {
        label: args.label.clone(),
        cores,
        rounds: args.rounds,
        seconds_per_run: args.seconds,
        in_flight: args.clients * args.streams,
        load_generator: "h2load (nghttp2-client), 1 thread".into(),
        bcrypt_cost: args.bcrypt_cost,
        bcrypt_verify_ms: verify.as_secs_f64() * 1000.0,
        scenarios: summaries,
        login_flood: vec![auth_alone, unloaded, loaded],
        goals,
        raw_rounds: rounds,
    };
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(&args.svg, report::svg(&report))?;
    println!("{}", report.markdown());
    eprintln!(
        "results: {} and {}",
        args.json.display(),
        args.svg.display()
    );
    Ok(())
}
