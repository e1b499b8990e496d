//! The nemesis: a seeded random schedule of faults — `kill -9` and restart,
//! `SIGSTOP`/`SIGCONT` pauses, network partitions through the fault
//! proxies — against every service, NATS, the SMTP sink and PostgreSQL,
//! one at a time, each recorded in the history as it starts and ends.

use std::time::Duration;

use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::IndexedRandom as _};
use serde::{Deserialize, Serialize};
use serde_json::json;

use shippy_testkit::ConsulAgent;

use crate::{
    cluster::{Cluster, SERVICES, signal},
    history::{Kind, Recorder},
    proxy::Mode,
};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9`, down for the hold, then started again.
    Kill,
    /// `SIGSTOP`, then `SIGCONT` after the hold.
    Pause,
    /// The proxy closes every connection and refuses new ones.
    PartitionRefuse,
    /// The proxy keeps connections open and forwards nothing.
    PartitionBlackhole,
}

impl FaultKind {
    /// Its name in the history and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::PartitionRefuse => "partition-refuse",
            Self::PartitionBlackhole => "partition-blackhole",
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// When it starts, in seconds after the faults begin.
    pub at: f64,
    /// What it does.
    pub kind: FaultKind,
    /// To what: a service, `nats`, `smtp`, `postgres`, or a proxy's name.
    pub target: String,
    /// How long it lasts, in seconds.
    pub hold: f64,
}

/// The proxies a partition can cut.
pub const LINKS: [&str; 6] = [
    "user-db",
    "vessel-db",
    "consignment-db",
    "user-nats",
    "email-nats",
    "consignment-vessel",
];

/// The schedule for `seed` over `duration`: one fault at a time, a quiet
/// gap of 1–3 s between them. `postgres` is paused only when
/// `pause_postgres` (it must be a server of the run's own); `consul` is a
/// target only when the run has one.
pub fn schedule(seed: u64, duration: Duration, pause_postgres: bool, consul: bool) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kill: Vec<&str> = SERVICES.to_vec();
    kill.extend(["nats", "smtp"]);
    let mut pause: Vec<&str> = SERVICES.to_vec();
    pause.push("nats");
    if pause_postgres {
        pause.push("postgres");
    }
    if consul {
        kill.push("consul");
        pause.push("consul");
    }
    let mut faults = Vec::new();
    let mut at = rng.random_range(1.0..3.0);
    let end = duration.as_secs_f64();
    while at < end {
        let kind = *[
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::PartitionRefuse,
            FaultKind::PartitionBlackhole,
        ]
        .choose(&mut rng)
        .unwrap_or(&FaultKind::Kill);
        let (targets, hold) = match kind {
            FaultKind::Kill => (&kill, rng.random_range(0.5..3.0)),
            FaultKind::Pause => (&pause, rng.random_range(1.5..5.0)),
            _ => (&LINKS.to_vec(), rng.random_range(2.0..7.0)),
        };
        let target = targets
            .choose(&mut rng)
            .copied()
            .unwrap_or("nats")
            .to_owned();
        let hold: f64 = hold;
        let hold = hold.min((end - at).max(0.5));
        faults.push(Fault {
            at,
            kind,
            target,
            hold,
        });
        at += hold + rng.random_range(1.0..3.0);
    }
    faults
}

/// Runs `faults` against `cluster`, `offset` seconds into the run (the
/// recorder's clock); every fault is healed before this returns.
pub async fn run(cluster: &mut Cluster, faults: &[Fault], recorder: &Recorder, offset: f64) {
    for (n, fault) in faults.iter().enumerate() {
        let due = offset + fault.at - recorder.now();
        if due > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(due)).await;
        }
        let seq = n as u64 + 1;
        let args = json!({ "hold": fault.hold });
        let kind = fault.kind.name();
        let hold = Duration::from_secs_f64(fault.hold);
        let target = fault.target.as_str();
        // The fault's start and end, in the history.
        let mark = |edge: Kind, result: serde_json::Value| {
            recorder.record("nemesis", seq, edge, kind, target, args.clone(), result);
        };
        match fault.kind {
            FaultKind::Kill => {
                mark(Kind::FaultStart, json!(null));
                let result = kill(cluster, target, hold).await;
                mark(Kind::FaultEnd, result);
            }
            FaultKind::Pause => {
                let pids = pids(cluster, target).await;
                for pid in &pids {
                    signal(*pid, "-STOP");
                }
                mark(Kind::FaultStart, json!({ "pids": pids }));
                tokio::time::sleep(hold).await;
                for pid in &pids {
                    signal(*pid, "-CONT");
                }
                mark(Kind::FaultEnd, json!(null));
            }
            FaultKind::PartitionRefuse | FaultKind::PartitionBlackhole => {
                let mode = if fault.kind == FaultKind::PartitionRefuse {
                    Mode::Refuse
                } else {
                    Mode::Blackhole
                };
                let proxy = cluster.proxy(target);
                if let Some(proxy) = proxy {
                    proxy.set(mode);
                }
                mark(Kind::FaultStart, json!(null));
                tokio::time::sleep(hold).await;
                if let Some(proxy) = proxy {
                    proxy.set(Mode::Pass);
                }
                mark(Kind::FaultEnd, json!(null));
            }
        }
    }
}

async fn pids(cluster: &Cluster, target: &str) -> Vec<u32> {
    match target {
        "postgres" => cluster.postgres_backends().await,
        "nats" => cluster.nats.pid().into_iter().collect(),
        "consul" => cluster
            .consul
            .as_ref()
            .and_then(ConsulAgent::pid)
            .into_iter()
            .collect(),
        service => cluster
            .service(service)
            .and_then(|service| service.pid())
            .into_iter()
            .collect(),
    }
}

/// Kills `target`, waits `down`, starts it again; what came of the restart.
async fn kill(cluster: &mut Cluster, target: &str, down: Duration) -> serde_json::Value {
    match target {
        "smtp" => {
            cluster.smtp.stop();
            tokio::time::sleep(down).await;
            cluster.smtp.restart().await;
            json!({ "restarted": true })
        }
        "consul" => match cluster.consul.as_mut() {
            Some(consul) => {
                consul.stop();
                tokio::time::sleep(down).await;
                consul.restart().await;
                json!({ "restarted": true })
            }
            None => json!({ "error": "no Consul in this run" }),
        },
        "nats" => {
            cluster.nats.kill();
            tokio::time::sleep(down).await;
            restart(&mut cluster.nats).await
        }
        service => match cluster.service_mut(service) {
            Some(process) => {
                process.kill();
                tokio::time::sleep(down).await;
                restart(process).await
            }
            None => json!({ "error": "no such target" }),
        },
    }
}

/// Starts a killed process again on its address (retrying while its port
/// is not free yet); how long until it was ready.
async fn restart(process: &mut crate::cluster::Proc) -> serde_json::Value {
    for attempt in 1..=5 {
        if let Err(error) = process.spawn() {
            return json!({ "error": error.to_string() });
        }
        if let Some(took) = process.wait_ready(Duration::from_secs(20)).await {
            return json!({ "ready_after_s": took.as_secs_f64(), "attempts": attempt });
        }
        process.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    json!({ "error": "not ready after 5 starts" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_seeds() {
        let one = schedule(7, Duration::from_secs(60), true, false);
        assert_eq!(one, schedule(7, Duration::from_secs(60), true, false));
        assert_ne!(one, schedule(8, Duration::from_secs(60), true, false));
        assert!(one.iter().all(|fault| fault.at + fault.hold <= 60.5));
        assert!(one.len() > 5, "{one:?}");
    }
}
