//! `shippy-chaos`: one soak, configured from the environment
//! (`CHAOS_DURATION`, `CHAOS_SEED`, `STORE`, `CHAOS_OUT`, `CHAOS_CLIENTS`,
//! `CHAOS_HTTP_CLIENTS`, `CHAOS_PAUSE_POSTGRES`, `CHAOS_CONSUL`); exits 1 on
//! any violation.
//! `shippy-chaos plot HISTORY SVG` draws a history's throughput plot again.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use shippy_chaos::{cluster::Store, run};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .with_context(|| format!("a duration like 300s or 5m, not {text:?}"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        other => anyhow::bail!("unknown duration unit {other:?} (s, m or h)"),
    })
}

/// `shippy-chaos plot HISTORY SVG`: the throughput plot of a history again.
fn plot(history: &str, svg: &str) -> anyhow::Result<()> {
    use shippy_chaos::history::Kind;
    let history = shippy_chaos::history::load(std::path::Path::new(history))?;
    let faults = history
        .iter()
        .filter(|entry| matches!(entry.kind, Kind::FaultStart | Kind::FaultEnd))
        .map(|entry| entry.time);
    let window = faults.fold((f64::MAX, 0.0_f64), |(first, last), time| {
        (first.min(time), last.max(time))
    });
    std::fs::write(svg, shippy_chaos::report::throughput_svg(&history, window))?;
    Ok(())
}

async fn main_result() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, command, history, svg] = args.as_slice()
        && command == "plot"
    {
        plot(history, svg)?;
        return Ok(true);
    }
    let store: Store = var("STORE").unwrap_or_default().parse()?;
    let faults = parse_duration(&var("CHAOS_DURATION").unwrap_or_else(|| "5m".into()))?;
    let seed = match var("CHAOS_SEED") {
        Some(seed) => seed.parse().context("CHAOS_SEED must be a number")?,
        None => rand::random::<u32>().into(),
    };
    let out = var("CHAOS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("target/chaos/{}-{seed}", store.name())));
    let mut config = run::Config::new(store, seed, faults, out.clone());
    if let Some(clients) = var("CHAOS_CLIENTS") {
        config.grpc_clients = clients.parse().context("CHAOS_CLIENTS must be a number")?;
    }
    if let Some(clients) = var("CHAOS_HTTP_CLIENTS") {
        config.http_clients = clients
            .parse()
            .context("CHAOS_HTTP_CLIENTS must be a number")?;
    }
    config.pause_postgres = var("CHAOS_PAUSE_POSTGRES").is_some_and(|value| value == "1");
    config.consul = var("CHAOS_CONSUL").is_some_and(|value| value == "1");
    eprintln!(
        "chaos: store {}, seed {seed}, {} s of faults, output in {}",
        store.name(),
        faults.as_secs(),
        out.display()
    );
    let report = run::soak(config).await?;
    print!("{}", shippy_chaos::report::markdown(&report));
    eprintln!("chaos: report in {}", out.join("report.md").display());
    Ok(report.passed())
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_result().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}
