//! What the chaos tests share.

use std::{path::PathBuf, time::Duration};

use shippy_chaos::{
    cluster::Store,
    run::{self, Config},
};

/// Waits for this test's turn: one cluster at a time (tokio's mutex wakes
/// a waiter on another test's runtime too).
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The seed: `CHAOS_SEED`, or `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(default)
}

/// Where a test's run writes its history, logs and report.
pub fn out(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("chaos")
        .join(format!("{name}-{}", uuid::Uuid::new_v4().simple()))
}

/// Pausing PostgreSQL's backends is safe only on a server of the run's own:
/// one `cargo dev infra up` started for `make test` (it leaves
/// `postgres.dir` in `SHIPPY_INFRA_DIR`; a reused server leaves none), or
/// when `CHAOS_PAUSE_POSTGRES=1` says so.
pub fn may_pause_postgres() -> bool {
    match std::env::var("CHAOS_PAUSE_POSTGRES") {
        Ok(value) => value == "1",
        Err(_) => std::env::var_os("SHIPPY_INFRA_DIR")
            .is_some_and(|dir| PathBuf::from(dir).join("postgres.dir").exists()),
    }
}

/// A short seeded soak on `store`: `faults` of faults, the services found
/// through Consul when `consul` (and the infrastructure runs one:
/// `TEST_CONSUL_BIN`); panics, with the report, on any violation.
pub async fn soak(store: Store, seed: u64, faults: Duration, consul: bool) {
    shippy_testkit::init_test_logging();
    let out = out(&format!("soak-{}-{seed}", store.name()));
    let mut config = Config::new(store, seed, faults, out.clone());
    config.pause_postgres = may_pause_postgres();
    config.consul = consul && std::env::var_os("TEST_CONSUL_BIN").is_some();
    let report = run::soak(config).await.expect("the soak runs");
    let text = shippy_chaos::report::markdown(&report);
    println!("{text}");
    assert!(
        report.passed(),
        "the soak found violations (seed {seed}; history, logs and report in {}):\n{text}",
        out.display()
    );
    let faults: usize = report
        .faults
        .values()
        .flat_map(|targets| targets.values())
        .sum();
    assert!(faults > 0, "the nemesis injected no fault: {text}");
    let ok = report
        .operations
        .iter()
        .filter(|(op, _)| op.starts_with("create"))
        .filter_map(|(_, outcomes)| outcomes.get("ok"))
        .sum::<usize>();
    assert!(
        ok > 0,
        "no create succeeded, so nothing was checked: {text}"
    );
}
