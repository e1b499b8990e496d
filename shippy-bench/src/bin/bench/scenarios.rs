//! The scenarios h2load drives, in interleaved rounds: each RPC, what every
//! answer must carry, the processes whose CPU time and memory it costs.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use shippy_proto::{
    bench::v1::{EchoRequest, echo_service_client::EchoServiceClient},
    consignment::v1::{GetRequest, Response, shipping_service_client::ShippingServiceClient},
    user::v1::{Token, user_service_client::UserServiceClient},
};
use tonic::transport::Channel;

use crate::{
    Args,
    cpu::{self, Watched},
    fixtures::{Fixtures, answer_size, bearer, consignment, count_consignments, user},
    h2load::{self, Call, Expect},
    memory::{self, Sampler},
    report::{self, Figures, RoundFigures},
};

pub const ECHO: &str = "Echo (baseline)";
pub const VALIDATE: &str = "ValidateToken";
pub const GET: &str = "GetConsignments (20 owned)";
const GET_GO: &str = "GetConsignments, Go peer";
pub const CREATE: &str = "CreateConsignment";
const CREATE_GO: &str = "CreateConsignment, Go peer";

const GET_METHOD: &str = "shippy.consignment.v1.ShippingService/GetConsignments";
const CREATE_METHOD: &str = "shippy.consignment.v1.ShippingService/CreateConsignment";

/// One thing to measure: an RPC, what each answer must carry, and the
/// processes that do the work.
#[derive(Debug)]
pub struct Scenario {
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

/// The service's URL path of `method`.
fn url(base: &str, method: &str) -> String {
    format!("{}/{method}", base.trim_end_matches('/'))
}

/// The request bodies h2load sends, written to files in `work`, and the
/// size of a good answer to each, asked once.
struct Requests {
    echo: (PathBuf, u64),
    validate: (PathBuf, u64),
    list: (PathBuf, u64),
    create: (PathBuf, Expect),
    /// Our answer to the lister's GetConsignments, for the Go peer's to match.
    listed: Response,
    create_size: u64,
}

impl Requests {
    async fn write(fixtures: &Fixtures, work: &Path) -> anyhow::Result<Self> {
        let echo_request = EchoRequest {
            payload: vec![7u8; 64],
        };
        let echo_size = answer_size(
            EchoServiceClient::new(fixtures.echo[0].clone())
                .echo(echo_request.clone())
                .await,
        )?;
        let validate = Token {
            token: fixtures.token.clone(),
            ..Default::default()
        };
        let validate_size = answer_size(
            UserServiceClient::new(fixtures.users[0].clone())
                .validate_token(validate.clone())
                .await,
        )?;
        let listed = ShippingServiceClient::new(fixtures.shipping[0].clone())
            .get_consignments(bearer(list_request(), &fixtures.lister))
            .await
            .context("list the lister's consignments")?
            .into_inner();
        if listed.consignments.len() != 20 {
            bail!(
                "the lister has {} consignments, not 20",
                listed.consignments.len()
            );
        }
        let create_size = answer_size(
            ShippingServiceClient::new(fixtures.shipping[0].clone())
                .create_consignment(bearer(consignment(), &fixtures.creator))
                .await,
        )?;
        Ok(Self {
            echo: (body(work, "echo", &echo_request)?, echo_size),
            validate: (body(work, "validate", &validate)?, validate_size),
            list: (
                body(work, "list", &list_request())?,
                h2load::frame(&listed).len() as u64,
            ),
            // A created consignment's answer varies by a few bytes (its
            // time's nanos).
            create: (
                body(work, "create", &consignment())?,
                Expect::Between(create_size.saturating_sub(8), create_size + 8),
            ),
            listed,
            create_size,
        })
    }
}

/// `message` written for h2load to `work/name`.
fn body(work: &Path, name: &str, message: &impl prost::Message) -> anyhow::Result<PathBuf> {
    let path = work.join(name);
    h2load::write_body(&path, message)?;
    Ok(path)
}

fn list_request() -> GetRequest {
    GetRequest {
        page_size: 20,
        page_token: String::new(),
    }
}

/// Every scenario, the Go peer's where it runs (once its answers are
/// checked to be ours).
pub async fn scenarios(
    args: &Args,
    fixtures: &Fixtures,
    work: &Path,
) -> anyhow::Result<Vec<Scenario>> {
    let requests = Requests::write(fixtures, work).await?;
    let call = |base: &str, method: &str, body: &PathBuf, token: Option<&String>| Call {
        url: url(base, method),
        body: body.clone(),
        token: token.cloned(),
    };
    let mut scenarios = vec![
        Scenario {
            name: ECHO,
            call: call(
                &args.echo,
                "shippy.bench.v1.EchoService/Echo",
                &requests.echo.0,
                None,
            ),
            expect: Expect::Exactly(requests.echo.1),
            processes: &["echo-server"],
            creates: false,
            peer_of: None,
        },
        Scenario {
            name: VALIDATE,
            call: call(
                &args.users,
                "shippy.user.v1.UserService/ValidateToken",
                &requests.validate.0,
                None,
            ),
            expect: Expect::Exactly(requests.validate.1),
            processes: &["user-service"],
            creates: false,
            peer_of: None,
        },
        Scenario {
            name: GET,
            call: call(
                &args.shipping,
                GET_METHOD,
                &requests.list.0,
                Some(&fixtures.lister),
            ),
            expect: Expect::Exactly(requests.list.1),
            processes: &["consignment-service", "postgres"],
            creates: false,
            peer_of: Some(GET_GO),
        },
        Scenario {
            name: CREATE,
            call: call(&args.shipping, CREATE_METHOD, &requests.create.0, None),
            expect: requests.create.1,
            processes: &["consignment-service", "vessel-service", "postgres"],
            creates: true,
            peer_of: Some(CREATE_GO),
        },
    ];
    let Some(go) = &args.go_shipping else {
        return Ok(scenarios);
    };
    check_go_peer(go, fixtures, &requests).await?;
    scenarios.insert(
        3,
        Scenario {
            name: GET_GO,
            call: call(go, GET_METHOD, &requests.list.0, Some(&fixtures.lister)),
            expect: Expect::Exactly(requests.list.1),
            processes: &["go-peer", "postgres"],
            creates: false,
            peer_of: None,
        },
    );
    scenarios.push(Scenario {
        name: CREATE_GO,
        call: call(go, CREATE_METHOD, &requests.create.0, None),
        expect: requests.create.1,
        processes: &["go-peer", "vessel-service", "postgres"],
        creates: true,
        peer_of: None,
    });
    Ok(scenarios)
}

/// The Go peer must answer as ours does, or the comparison means nothing.
async fn check_go_peer(go: &str, fixtures: &Fixtures, requests: &Requests) -> anyhow::Result<()> {
    let go_channel = Channel::from_shared(go.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {go}"))?;
    let theirs = ShippingServiceClient::new(go_channel.clone())
        .get_consignments(bearer(list_request(), &fixtures.lister))
        .await
        .context("list the lister's consignments through the Go peer")?
        .into_inner();
    if theirs != requests.listed {
        bail!(
            "the Go peer answers GetConsignments differently:\nours: {:?}\ntheirs: {theirs:?}",
            requests.listed
        );
    }
    let go_create_size = answer_size(
        ShippingServiceClient::new(go_channel)
            .create_consignment(bearer(consignment(), &fixtures.creator))
            .await,
    )?;
    if go_create_size.abs_diff(requests.create_size) > 8 {
        bail!(
            "the Go peer's CreateConsignment answer is {go_create_size} bytes, ours {}",
            requests.create_size
        );
    }
    Ok(())
}

/// Runs every scenario once per round, in turn.
pub async fn rounds(
    args: &Args,
    fixtures: &Fixtures,
    scenarios: &[Scenario],
    work: &Path,
) -> anyhow::Result<Vec<Vec<RoundFigures>>> {
    let ticks_per_second = cpu::ticks_per_second();
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round} of {}", args.rounds);
        let mut figures = Vec::new();
        for scenario in scenarios {
            figures.push(run_once(scenario, args, fixtures, work, ticks_per_second).await?);
        }
        rounds.push(figures);
    }
    Ok(rounds)
}

/// Each scenario's medians over the rounds, compared with its peer's.
pub fn summarise(scenarios: &[Scenario], rounds: &[Vec<RoundFigures>]) -> Vec<Figures> {
    let position = |name: &str| scenarios.iter().position(|other| other.name == name);
    let mut summaries: Vec<Figures> = scenarios
        .iter()
        .enumerate()
        .map(|(index, scenario)| {
            let peer = scenario.peer_of.and_then(position);
            Figures::from_rounds(scenario.name, scenario.processes, rounds, index, 0, peer)
        })
        .collect();
    for (index, scenario) in scenarios.iter().enumerate() {
        if let Some(peer) = scenario.peer_of.and_then(position) {
            let theirs = summaries[peer].clone();
            summaries[index].compare_with(&theirs);
        }
    }
    summaries
}

/// Runs `scenario` once: a 1 s warm-up, then a timed run with the CPU time
/// of its processes read before and after, and their memory sampled
/// throughout.
async fn run_once(
    scenario: &Scenario,
    args: &Args,
    fixtures: &Fixtures,
    work: &Path,
    ticks_per_second: f64,
) -> anyhow::Result<RoundFigures> {
    let log = work.join("h2load.log");
    let mut call = scenario.call.clone();
    let mut warm_up = call.clone();
    if scenario.creates {
        // Warm up as one caller, measure as a fresh one: its consignments
        // are exactly the timed run's.
        warm_up.token = Some(user(&fixtures.users[0], "warm-up").await?.1);
        call.token = Some(user(&fixtures.users[0], "creator").await?.1);
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
    let memory = Sampler::start(watched.clone(), memory::EVERY);
    let started = Instant::now();
    let run = tokio::task::block_in_place(|| {
        h2load::run(&call, clients, streams, args.seconds, expect, &log)
    });
    let wall = started.elapsed();
    let after = cpu::sample(&watched);
    let resident = memory.finish();
    let run = run.with_context(|| scenario.name)?;
    if scenario.creates {
        let token = call.token.as_deref().unwrap_or_default();
        let stored = count_consignments(&fixtures.shipping[0], token).await?;
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
        rss_peak_mib: resident
            .iter()
            .map(|(name, resident)| (name.clone(), resident.peak_mib))
            .collect(),
        rss_mean_mib: resident
            .iter()
            .map(|(name, resident)| (name.clone(), resident.mean_mib))
            .collect(),
    };
    eprintln!(
        "  {:<30} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  CPU µs/request: {}  peak RSS MiB: {}",
        scenario.name,
        figures.requests_per_second,
        figures.p50_ms,
        figures.p99_ms,
        report::per_process_text(&figures.cpu_us, scenario.processes),
        report::per_process_text(&figures.rss_peak_mib, scenario.processes)
    );
    Ok(figures)
}
