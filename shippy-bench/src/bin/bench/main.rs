//! The load generator of `make bench`: drives a bare echo server (the
//! baseline), our services and the Go peer (`bench/go-peer`) with h2load, in
//! interleaved rounds, and reports each scenario's throughput, latency, CPU
//! time per request and memory of every process involved (from `/proc`), its
//! ratio to the echo and to the Go peer measured in the same round, and the
//! system's footprint (idle memory, cold starts, image sizes), as a table,
//! JSON and an SVG chart.
//!
//! `fixtures` prepares the accounts, `scenarios` runs the h2load rounds,
//! `flood` the login flood, `cpu` and `memory` read `/proc`, `footprint` and
//! `images` gather what the system costs to keep, `report` shows it all.

mod cpu;
mod fixtures;
mod flood;
mod footprint;
mod h2load;
mod images;
mod memory;
mod report;
mod scenarios;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Parser;

use crate::{
    cpu::Watched,
    fixtures::Fixtures,
    flood::Flood,
    footprint::{ColdStart, Footprint},
    images::Images,
    report::{Figures, Goal, Report},
    scenarios::{CREATE, ECHO, GET, VALIDATE},
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
    /// Processes whose CPU time and memory are measured, as NAME=PID
    /// (NAME+=PID for a process and all it starts): echo-server,
    /// user-service, consignment-service, vessel-service, go-peer, postgres;
    /// email-service and api-gateway for the cluster's idle memory.
    #[arg(long = "pid", value_parser = Watched::parse)]
    pids: Vec<Watched>,
    /// A service's cold start, as NAME=MILLIS: from its spawn to its first
    /// SERVING answer (`cargo dev bench` measures it with serving-clock).
    #[arg(long = "started", value_parser = ColdStart::parse)]
    cold_starts: Vec<ColdStart>,
    /// When a service first accepted a connection, as NAME=MILLIS since its
    /// spawn (serving-clock too).
    #[arg(long = "listening", value_parser = ColdStart::parse)]
    listening: Vec<ColdStart>,
    /// The compose file whose images' sizes are reported (if built).
    #[arg(long, default_value = "docker-compose.yml")]
    compose_file: PathBuf,
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

fn bcrypt_verify_time(cost: u32) -> anyhow::Result<Duration> {
    let hash = bcrypt::hash(fixtures::PASSWORD, cost)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        bcrypt::verify(fixtures::PASSWORD, &hash)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
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
    // Before any load: the cluster has only started.
    let idle = memory::now_mib(&args.pids);
    let fixtures = Fixtures::prepare(args).await?;
    let scenarios = scenarios::scenarios(args, &fixtures, work).await?;
    let rounds = scenarios::rounds(args, &fixtures, &scenarios, work).await?;
    let summaries = scenarios::summarise(&scenarios, &rounds);
    let flood = flood::login_flood(args, &fixtures).await?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let verify = bcrypt_verify_time(args.bcrypt_cost)?;
    let goals = goals(&summaries, &flood, cores, verify);
    let images = Images::measure(&args.compose_file).await;
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
        login_flood: vec![flood.auth_alone, flood.unloaded, flood.loaded],
        goals,
        footprint: Footprint::new(idle, &args.cold_starts, &args.listening, images),
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

/// The benchmark's targets, and whether this run met them.
fn goals(summaries: &[Figures], flood: &Flood, cores: usize, verify: Duration) -> Vec<Goal> {
    let figure = |name: &str| summaries.iter().find(|figures| figures.name == name);
    let mut goals = vec![Goal::at_least(
        "ValidateToken / echo",
        0.5,
        figure(VALIDATE).map_or(0.0, |figures| figures.ratio_to_echo),
    )];
    // CPU in echoes: µs per request ÷ the echo server's, in this run.
    let echo_us = figure(ECHO).map_or(0.0, |echo| echo.cpu_us("echo-server"));
    let in_echoes = |micros: f64| {
        if echo_us > 0.0 { micros / echo_us } else { 0.0 }
    };
    // Per call: its throughput against the echo's, the CPU its busiest
    // part spends on one, and its throughput against the Go peer's.
    for (scenario, rpc, vs_echo, (cpu, process, cpu_bound), vs_peer) in [
        (
            GET,
            "GetConsignments",
            0.12,
            (
                "consignment-service CPU per page of 20",
                "consignment-service",
                5.0,
            ),
            1.3,
        ),
        (
            CREATE,
            "CreateConsignment",
            0.05,
            ("PostgreSQL CPU per creation", "postgres", 15.0),
            1.5,
        ),
    ] {
        let Some(run) = figure(scenario) else {
            continue;
        };
        goals.push(Goal::at_least(
            &format!("{rpc} / echo"),
            vs_echo,
            run.ratio_to_echo,
        ));
        goals.push(Goal::at_most(
            &format!("{rpc}: {cpu}, in echoes"),
            cpu_bound,
            in_echoes(run.cpu_us(process)),
        ));
        if let Some(ratio) = run.ratio_to_peer {
            goals.push(Goal::at_least(&format!("{rpc} / Go peer"), vs_peer, ratio));
        }
    }
    goals.push(Goal::at_least(
        "Auth req/s >= 0.9 x cores / bcrypt verify time",
        0.9 * cores as f64 / verify.as_secs_f64(),
        flood.auth_alone.requests_per_second,
    ));
    goals.push(Goal::at_most(
        "GetConsignments p99 under an Auth flood / unloaded p99",
        3.0,
        flood.loaded.p99_ms / flood.unloaded.p99_ms.max(0.001),
    ));
    goals
}
