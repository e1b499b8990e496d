//! One soak, start to finish: the cluster, the workload and the nemesis
//! together, quiescence, observation, the checker, the report.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    checker::{self, Observed, Verdict},
    cluster::{Cluster, SERVICES, Store, Timing},
    history::{Entry, Recorder},
    nemesis::{self, Fault},
    view::View,
    workload::{self, Endpoints, Load},
};

/// Fleet checks during the run: (seconds, what was wrong).
type Samples = Arc<Mutex<Vec<(f64, Vec<String>)>>>;

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where vessels and consignments are kept.
    pub store: Store,
    /// The seed of the fault schedule and the clients' choices.
    pub seed: u64,
    /// How long faults are injected (zero: none).
    pub faults: Duration,
    /// Load before the first fault, and after the last (on a healed cluster).
    pub calm: Duration,
    /// Clients through gRPC.
    pub grpc_clients: usize,
    /// Clients through the api-gateway.
    pub http_clients: usize,
    /// Where the history, logs and report go.
    pub out: PathBuf,
    /// The services' timing settings.
    pub timing: Timing,
    /// Whether the nemesis may pause PostgreSQL's backends of the run's
    /// databases (only on a server of the run's own).
    pub pause_postgres: bool,
    /// How soon after the last fault every service must be ready again.
    pub recovery_limit: Duration,
    /// Whether the services register with a Consul agent of the run's own
    /// and find each other through it (the nemesis then kills and pauses
    /// Consul too); needs `TEST_CONSUL_BIN`.
    pub consul: bool,
}

impl Config {
    /// Defaults for `store` and `seed`, into `out`.
    pub fn new(store: Store, seed: u64, faults: Duration, out: PathBuf) -> Self {
        Self {
            store,
            seed,
            faults,
            calm: Duration::from_secs(5),
            grpc_clients: 4,
            http_clients: 2,
            out,
            timing: Timing::default(),
            pause_postgres: false,
            recovery_limit: Duration::from_secs(30),
            consul: false,
        }
    }
}

/// A cluster with its workload's history, between the steps of a soak
/// (the self-test drives it step by step).
#[derive(Debug)]
pub struct Soak {
    /// The cluster.
    pub cluster: Cluster,
    /// The checker's view of the databases.
    pub view: View,
    /// The history.
    pub recorder: Recorder,
    /// How it runs.
    pub config: Config,
    /// The nemesis's schedule.
    pub schedule: Vec<Fault>,
    /// When faults began and ended (seconds into the run).
    pub fault_window: (f64, f64),
    samples: Samples,
    recovery: BTreeMap<String, Option<f64>>,
}

impl Soak {
    /// Starts the cluster and creates the fleet.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.out)?;
        let recorder = Recorder::new(Some(&config.out.join("history.jsonl")))?;
        let cluster =
            Cluster::start(config.store, config.timing, &config.out, config.consul).await?;
        workload::create_fleet(endpoints(&cluster)).await?;
        let view = View::connect(
            config.store,
            &cluster.users_db,
            &cluster.vessels_db,
            &cluster.consignments_db,
        )
        .await?;
        let schedule = nemesis::schedule(
            config.seed,
            config.faults,
            config.pause_postgres,
            config.consul,
        );
        std::fs::write(
            config.out.join("schedule.json"),
            serde_json::to_vec_pretty(&schedule)?,
        )?;
        Ok(Self {
            cluster,
            view,
            recorder,
            config,
            schedule,
            fault_window: (0.0, 0.0),
            samples: Arc::default(),
            recovery: BTreeMap::new(),
        })
    }

    /// The load: calm, the nemesis's faults, calm again; the fleet sampled
    /// all along. Then waits for every service to be ready.
    pub async fn run(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let load = Load {
            grpc_clients: self.config.grpc_clients,
            http_clients: self.config.http_clients,
            seed: self.config.seed,
            call_timeout: Duration::from_secs(5),
            think: Duration::from_millis(80),
        };
        let clients = tokio::spawn(workload::run(
            endpoints(&self.cluster),
            load,
            self.recorder.clone(),
            stop.clone(),
        ));
        let sampler = tokio::spawn(sample(
            self.view.clone(),
            self.recorder.clone(),
            self.samples.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(self.config.calm).await;
        let start = self.recorder.now();
        let schedule = self.schedule.clone();
        nemesis::run(&mut self.cluster, &schedule, &self.recorder, start).await;
        let end = self.recorder.now();
        self.fault_window = (start, end);
        let limit = self.config.recovery_limit;
        for process in &self.cluster.services {
            let took = process.wait_ready(limit).await;
            self.recovery
                .insert(process.name.clone(), took.map(|took| took.as_secs_f64()));
        }
        tokio::time::sleep(self.config.calm).await;
        stop.store(true, Ordering::Relaxed);
        let _ = clients.await;
        let _ = sampler.await;
    }

    /// Waits past the reservation TTL and a recovery sweep, then until
    /// nothing is half-done and every user's mail has come (up to a minute
    /// each).
    pub async fn quiesce(&self) {
        let timing = self.config.timing;
        tokio::time::sleep(
            timing.reservation_ttl
                + timing.sweep_interval * 2
                + timing.recovery_after
                + timing.recovery_interval * 2,
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let (Ok(fleet), Ok(consignments)) =
                (self.view.fleet().await, self.view.consignments().await)
            {
                let settled = fleet
                    .reservations
                    .iter()
                    .all(|reservation| reservation.confirmed)
                    && consignments.iter().all(|consignment| {
                        matches!(consignment.state.as_str(), "confirmed" | "cancelled")
                    });
                if settled {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let users = self
            .view
            .users()
            .await
            .map(|users| users.len())
            .unwrap_or(0);
        self.cluster
            .smtp
            .wait_for_mails(users, Duration::from_secs(60))
            .await;
        // A mail sent twice would come a little later.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    /// What the databases, listings, mail sink and logs hold now.
    pub async fn observe(&self) -> anyhow::Result<Observed> {
        let snapshot = self.view.snapshot().await?;
        let shipping = workload::shipping_client(self.cluster.address("consignment-service"))?;
        let mut listings = BTreeMap::new();
        for email in snapshot.users.keys() {
            let mut listing = Err(String::from("not tried"));
            for _ in 0..3 {
                listing = match workload::login(self.cluster.address("user-service"), email).await {
                    Ok(token) => workload::list_all(shipping.clone(), &token)
                        .await
                        .map_err(|status| format!("list: {status}")),
                    Err(status) => Err(format!("login: {status}")),
                };
                if listing.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            listings.insert(email.clone(), listing);
        }
        let mails = self.cluster.smtp.mails();
        let _ = std::fs::write(
            self.config.out.join("mails.txt"),
            mails.join("\n----- next mail -----\n"),
        );
        let mails = mails
            .iter()
            .map(|mail| checker::ReceivedMail::parse(mail))
            .collect();
        let mut panics = Vec::new();
        for log in self.cluster.logs() {
            let Ok(text) = std::fs::read_to_string(&log) else {
                continue;
            };
            for line in text.lines().filter(|line| line.contains("panicked")) {
                panics.push(format!(
                    "{}: {}",
                    log.file_name().unwrap_or_default().to_string_lossy(),
                    line.chars().take(300).collect::<String>()
                ));
            }
        }
        let mut recovery = self.recovery.clone();
        if recovery.is_empty() {
            for process in &self.cluster.services {
                let took = process.wait_ready(self.config.recovery_limit).await;
                recovery.insert(process.name.clone(), took.map(|took| took.as_secs_f64()));
            }
        }
        Ok(Observed {
            snapshot,
            listings,
            mails,
            samples: self
                .samples
                .lock()
                .map(|samples| samples.clone())
                .unwrap_or_default(),
            recovery,
            recovery_limit: self.config.recovery_limit.as_secs_f64(),
            panics,
        })
    }

    /// Checks again, now, that every service is ready (within `limit`),
    /// replacing what [`Soak::run`] measured after the last fault.
    pub async fn recheck_recovery(&mut self, limit: Duration) {
        self.recovery.clear();
        self.config.recovery_limit = limit;
        for process in &self.cluster.services {
            let took = process.wait_ready(limit).await;
            self.recovery
                .insert(process.name.clone(), took.map(|took| took.as_secs_f64()));
        }
    }

    /// The history so far.
    pub fn history(&self) -> Vec<Entry> {
        self.recorder.entries()
    }
}

fn endpoints(cluster: &Cluster) -> Endpoints {
    Endpoints {
        users: cluster.address("user-service"),
        shipping: cluster.address("consignment-service"),
        vessels: cluster.address("vessel-service"),
        gateway: cluster.address("api-gateway"),
    }
}

/// Checks the fleet's room every second while the run lasts.
async fn sample(view: View, recorder: Recorder, samples: Samples, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Ok(fleet)) = tokio::time::timeout(Duration::from_secs(3), view.fleet()).await {
            let wrong = checker::fleet_violations(&fleet, None);
            if let Ok(mut samples) = samples.lock() {
                samples.push((recorder.now(), wrong));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A finished soak: what the report says.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The store.
    pub store: &'static str,
    /// The seed.
    pub seed: u64,
    /// When faults began and ended, seconds into the run.
    pub fault_window: (f64, f64),
    /// Operations by kind and outcome.
    pub operations: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Faults by kind and target.
    pub faults: BTreeMap<String, BTreeMap<String, usize>>,
    /// Each invariant's verdict.
    pub verdicts: Vec<Verdict>,
    /// Seconds each service took to be ready after the last fault.
    pub recovery: BTreeMap<String, Option<f64>>,
    /// Fleet samples taken during the run.
    pub samples: usize,
    /// Users, consignments (by state), mails at the end.
    pub totals: BTreeMap<String, usize>,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::holds)
    }
}

/// The report of a soak's history and observations.
pub fn report(soak: &Soak, history: &[Entry], observed: &Observed) -> Report {
    let mut totals = BTreeMap::new();
    totals.insert("users".to_owned(), observed.snapshot.users.len());
    totals.insert("mails".to_owned(), observed.mails.len());
    // Not an invariant, but worth a look: an outage should be UNAVAILABLE.
    let internal = history
        .iter()
        .filter(|entry| entry.kind == crate::history::Kind::Indeterminate)
        .filter(|entry| {
            let error = entry.result["error"].as_str().unwrap_or_default();
            error.starts_with("Internal") || error.starts_with("500")
        })
        .count();
    totals.insert("answers INTERNAL / 500".to_owned(), internal);
    for consignment in &observed.snapshot.consignments {
        *totals
            .entry(format!("consignments {}", consignment.state))
            .or_default() += 1;
    }
    Report {
        store: soak.config.store.name(),
        seed: soak.config.seed,
        fault_window: soak.fault_window,
        operations: checker::outcomes(history),
        faults: checker::faults(history),
        verdicts: checker::check(history, observed),
        recovery: observed.recovery.clone(),
        samples: observed.samples.len(),
        totals,
    }
}

/// A whole soak: start, load and faults, quiescence, check; the report
/// written to `out` (report.json, report.md, throughput.svg).
pub async fn soak(config: Config) -> anyhow::Result<Report> {
    let mut soak = Soak::start(config).await?;
    soak.run().await;
    soak.quiesce().await;
    let observed = soak.observe().await?;
    let history = soak.history();
    let report = report(&soak, &history, &observed);
    let out = &soak.config.out;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(
        out.join("observed.json"),
        serde_json::to_vec_pretty(&observed)?,
    )?;
    std::fs::write(out.join("report.md"), crate::report::markdown(&report))?;
    std::fs::write(
        out.join("throughput.svg"),
        crate::report::throughput_svg(&history, soak.fault_window),
    )?;
    let _ = SERVICES;
    Ok(report)
}
