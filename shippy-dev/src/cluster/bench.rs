//! `make bench`: release builds of the cluster, a bare tonic echo server as
//! the baseline and the Go peer of consignment-service, each service's cold
//! start timed by `serving-clock`, then shippy-bench's `bench` drives h2load
//! against them in rounds (`BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_LABEL`,
//! `BENCH_JSON`, `BENCH_SVG`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection as _;
use tokio::process::Command;

use super::up::{Cluster, Options, SERVICES, clock_name, target_dir, up};
use super::{Session, Store, env_var, go_peer, probe, say};
use crate::provision;
use crate::repo;

pub(crate) async fn run(session: &mut Session, store: Store) -> anyhow::Result<()> {
    let admin_emails = env_var("ADMIN_EMAILS").unwrap_or_else(|| "admin@example.com".into());
    // The load generator signs up as this admin to add a vessel with room for
    // every consignment it creates: the seed fleet takes only a few.
    let admin_emails = format!("{admin_emails},bench-admin@example.com");
    let options = Options {
        profile: "release",
        bcrypt_cost: env_var("BCRYPT_COST").unwrap_or_else(|| "12".into()),
        admin_emails: admin_emails.clone(),
        env: vec![
            (
                "RUST_LOG".into(),
                env_var("RUST_LOG").unwrap_or_else(|| "warn".into()),
            ),
            ("ADMIN_EMAILS".into(), admin_emails),
            // Its accounts create far more than vessel-service's per-account
            // cap (a quarter of the seed fleet) allows: the cap is lifted.
            (
                "ACCOUNT_MAX_CONTAINERS".into(),
                env_var("ACCOUNT_MAX_CONTAINERS").unwrap_or_else(|| "1000000000000".into()),
            ),
            (
                "ACCOUNT_MAX_WEIGHT".into(),
                env_var("ACCOUNT_MAX_WEIGHT").unwrap_or_else(|| "1000000000000000".into()),
            ),
        ],
        cold_start_clock: true,
    };
    if store != Store::Postgres {
        bail!("make bench measures the PostgreSQL stores (the Go peer uses them): STORE=postgres");
    }
    if !provision::have("h2load") {
        say("installing h2load (Debian's nghttp2-client): the load generator");
        tokio::task::spawn_blocking(|| provision::apt(&["nghttp2-client"])).await??;
    }
    say("building the Go peer (bench/go-peer, from Debian's Go packages)");
    let go_peer = target_dir().join("release").join("go-peer");
    go_peer::build(&go_peer).await?;

    let cluster = up(session, store, &options).await?;
    let [echo_port, go_port] = shippy_testkit::spare_ports::<2>();

    say("starting the baseline: a bare tonic echo server");
    let mut echo = Command::new(cluster.bin.join("echo-server"));
    echo.envs(options.env.iter().cloned())
        .arg("--listen-addr")
        .arg(format!("127.0.0.1:{echo_port}"));
    session.processes.start("echo-server", echo)?;
    probe::wait_listening(echo_port, Duration::from_secs(10)).await;

    say("starting the Go peer of consignment-service, on the same database and vessel-service");
    let mut peer = Command::new(&go_peer);
    peer.envs(options.env.iter().cloned())
        .env("LISTEN_ADDR", format!("127.0.0.1:{go_port}"))
        .env("DATABASE_URL", &cluster.consignments_url)
        .env("USER_SERVICE_URL", cluster.service_url("user-service"))
        .env("VESSEL_SERVICE_URL", cluster.service_url("vessel-service"))
        .env("SERVICE_TOKEN", &cluster.service_token);
    session.processes.start("go-peer", peer)?;
    wait_for_go_peer(session).await?;

    let mut watched = vec![
        "--pid".to_owned(),
        format!("postgres+={}", postmaster(&cluster.database_url).await?),
    ];
    for name in [
        "echo-server",
        "user-service",
        "consignment-service",
        "vessel-service",
        "email-service",
        "api-gateway",
        "go-peer",
    ] {
        let pid = session
            .processes
            .pid(name)
            .with_context(|| format!("{name} is not running"))?;
        watched.extend(["--pid".to_owned(), format!("{name}={pid}")]);
    }
    for name in SERVICES {
        let _ = session.processes.wait(&clock_name(name)).await;
    }
    for name in [
        "user-service",
        "consignment-service",
        "vessel-service",
        "email-service",
        "api-gateway",
    ] {
        let path = session.run.join(format!("{name}.cold-start"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let [serving, listening] = text.split_whitespace().collect::<Vec<_>>()[..] {
            watched.extend([
                "--started".to_owned(),
                format!("{name}={serving}"),
                "--listening".to_owned(),
                format!("{name}={listening}"),
            ]);
        }
    }

    let seconds = env_var("BENCH_SECONDS").unwrap_or_else(|| "5".into());
    let rounds = env_var("BENCH_ROUNDS").unwrap_or_else(|| "5".into());
    say(&format!(
        "load: h2load against each, {rounds} interleaved rounds of {seconds} s a scenario"
    ));
    let label = match env_var("BENCH_LABEL") {
        Some(label) => label,
        None => git_head().await,
    };
    let url = Cluster::url;
    let status = Command::new(cluster.bin.join("bench"))
        .envs(options.env.iter().cloned())
        .envs(cluster.cli_env())
        .current_dir(repo())
        .arg("--echo")
        .arg(url(echo_port))
        .arg("--users")
        .arg(cluster.service_url("user-service"))
        .arg("--shipping")
        .arg(cluster.service_url("consignment-service"))
        .arg("--go-shipping")
        .arg(url(go_port))
        .arg("--vessels")
        .arg(cluster.service_url("vessel-service"))
        .args(["--admin-email", "bench-admin@example.com"])
        .args(&watched)
        .args(["--seconds", &seconds, "--rounds", &rounds])
        .args(["--bcrypt-cost", &options.bcrypt_cost])
        .args(["--label", &label])
        .arg("--json")
        .arg(env_var("BENCH_JSON").unwrap_or_else(|| "bench/results.json".into()))
        .arg("--svg")
        .arg(env_var("BENCH_SVG").unwrap_or_else(|| "bench/results.svg".into()))
        .kill_on_drop(true)
        .status()
        .await;
    if !status.is_ok_and(|status| status.success()) {
        bail!(
            "the load generator failed (logs: {})",
            session.run.display()
        );
    }
    Ok(())
}

/// Waits (up to 30 s) for the Go peer's `listening on …` line.
async fn wait_for_go_peer(session: &mut Session) -> anyhow::Result<()> {
    let log = session.processes.log_path("go-peer");
    for _ in 0..300 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|line| line.starts_with("listening on ")) {
            return Ok(());
        }
        if session.processes.exited("go-peer").is_some() {
            eprintln!("{text}");
            bail!("the Go peer exited");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the Go peer did not start (log: {})", log.display())
}

/// The pid of PostgreSQL's postmaster (its CPU time and its backends' are
/// measured): the first line of `postmaster.pid` in its data directory.
async fn postmaster(database_url: &str) -> anyhow::Result<String> {
    let mut connection = sqlx::PgConnection::connect(database_url)
        .await
        .context("cannot connect to PostgreSQL (TEST_DATABASE_URL)")?;
    let (dir,): (String,) = sqlx::query_as("SHOW data_directory")
        .fetch_one(&mut connection)
        .await
        .context("cannot ask PostgreSQL for its data directory")?;
    let path = Path::new(&dir).join("postmaster.pid");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: make bench measures a PostgreSQL server on this machine",
            path.display()
        )
    })?;
    text.lines()
        .next()
        .map(|pid| pid.trim().to_owned())
        .filter(|pid| !pid.is_empty())
        .with_context(|| format!("{} names no pid", path.display()))
}

/// `git rev-parse --short HEAD`, or "this tree".
async fn git_head() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|label| !label.is_empty())
        .unwrap_or_else(|| "this tree".into())
}
