//! What the system costs to keep: each process's memory at idle and under
//! each scenario, the whole cluster's idle memory, how long each service
//! takes from spawn to serving, and the compose images' size.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::{
    images::Images,
    memory,
    report::{Figures, cell},
};

/// The release processes of the cluster `make bench` starts: its idle
/// footprint is theirs summed.
pub const CLUSTER: [&str; 5] = [
    "user-service",
    "consignment-service",
    "vessel-service",
    "email-service",
    "api-gateway",
];

/// A service's cold start, as `--started NAME=MILLIS`: from its spawn to
/// its first SERVING health answer (the api-gateway's: its first ready
/// `/readyz`), measured by `serving-clock` as `cargo dev bench` starts it;
/// or, as `--listening NAME=MILLIS`, to its first accepted connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStart {
    pub name: String,
    pub millis: f64,
}

impl ColdStart {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, millis) = crate::cpu::name_and_value(text, "MILLIS")?;
        let millis = millis
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|millis| millis.is_finite() && *millis >= 0.0)
            .ok_or_else(|| format!("`{millis}` in `{text}` is not a number of milliseconds"))?;
        Ok(Self {
            name: name.to_owned(),
            millis,
        })
    }
}

/// One process of the cluster at idle.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterProcess {
    pub name: String,
    pub idle_rss_mib: Option<f64>,
    /// Spawn to first SERVING (the api-gateway: to ready), if measured.
    pub cold_start_ms: Option<f64>,
    /// Spawn to its first accepted connection, if measured: the rest of the
    /// cold start it waits on what it depends on.
    pub listening_ms: Option<f64>,
}

/// Memory at idle, the cluster's cold starts, the compose images.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// Each watched process's resident memory before any load, in MiB
    /// (`VmRSS`; PostgreSQL's processes' `Pss` summed).
    pub idle_rss_mib: BTreeMap<String, f64>,
    /// The cluster's release processes ([`CLUSTER`]) at idle.
    pub cluster: Vec<ClusterProcess>,
    /// Theirs summed (those measured).
    pub cluster_idle_rss_mib: f64,
    pub images: Images,
}

impl Footprint {
    pub fn new(
        idle: HashMap<String, f64>,
        cold_starts: &[ColdStart],
        listening: &[ColdStart],
        images: Images,
    ) -> Self {
        let of = |starts: &[ColdStart], name: &str| {
            starts
                .iter()
                .find(|start| start.name == name)
                .map(|start| start.millis)
        };
        let cluster: Vec<ClusterProcess> = CLUSTER
            .iter()
            .map(|name| ClusterProcess {
                name: (*name).to_owned(),
                idle_rss_mib: idle.get(*name).copied(),
                cold_start_ms: of(cold_starts, name),
                listening_ms: of(listening, name),
            })
            .collect();
        Self {
            cluster_idle_rss_mib: cluster
                .iter()
                .filter_map(|process| process.idle_rss_mib)
                .sum(),
            cluster,
            idle_rss_mib: idle.into_iter().collect(),
            images,
        }
    }

    /// The footprint as Markdown: memory under each scenario beside idle,
    /// ours beside the Go peer's, the cluster at idle, the images.
    pub fn markdown(&self, scenarios: &[Figures]) -> String {
        let mut out = format!(
            "\nResident memory, MiB: at idle (before any load), and the peak under each scenario \
             (sampled every {} ms through each timed run, median over the rounds). A process's \
             is its VmRSS; PostgreSQL's the PSS of the postmaster and its backends summed (the \
             shared buffers counted once):\n\n| process | idle |",
            memory::EVERY.as_millis()
        );
        for figures in scenarios {
            out.push_str(&format!(" {} |", figures.name));
        }
        out.push_str(&format!(
            "\n|---|---:|{}\n",
            "---:|".repeat(scenarios.len())
        ));
        for process in self.processes(scenarios) {
            out.push_str(&format!(
                "| {process} | {} |",
                cell(self.idle_rss_mib.get(&process).copied(), 1)
            ));
            for figures in scenarios {
                out.push_str(&format!(
                    " {} |",
                    cell(figures.rss_peak_mib.get(&process).copied(), 1)
                ));
            }
            out.push('\n');
        }
        out.push_str(&peers_markdown(scenarios));
        out.push_str(&self.cluster_markdown());
        out.push_str(&self.images.markdown());
        out
    }

    /// Every process measured, those of the scenarios first, in their order.
    fn processes(&self, scenarios: &[Figures]) -> Vec<String> {
        let mut processes: Vec<String> = Vec::new();
        let named = scenarios
            .iter()
            .flat_map(|figures| figures.processes.iter())
            .chain(self.idle_rss_mib.keys());
        for process in named {
            if !processes.contains(process) {
                processes.push(process.clone());
            }
        }
        processes
    }

    fn cluster_markdown(&self) -> String {
        let mut out = String::from(
            "\nThe cluster's release processes at idle, and each one's cold start: from its \
             spawn to its first accepted connection, and to its first SERVING health answer \
             (the api-gateway's: its first ready /readyz); a service serves once what it \
             depends on answers (its database, the services it calls, found through Consul). \
             All five start at once, as in `make dev`:\n\n\
             | process | idle RSS MiB | listening ms | cold start to SERVING ms |\n|---|---:|---:|---:|\n",
        );
        for process in &self.cluster {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                process.name,
                cell(process.idle_rss_mib, 1),
                cell(process.listening_ms, 0),
                cell(process.cold_start_ms, 0)
            ));
        }
        out.push_str(&format!(
            "| **all five** | **{:.1}** | | |\n",
            self.cluster_idle_rss_mib
        ));
        out
    }
}

/// Each scenario compared with its Go peer: their serving processes' peak
/// memory side by side.
fn peers_markdown(scenarios: &[Figures]) -> String {
    let pairs: Vec<(&Figures, &Figures)> = scenarios
        .iter()
        .filter_map(|ours| {
            let peer = ours.peer.as_deref()?;
            Some((ours, scenarios.iter().find(|other| other.name == peer)?))
        })
        .collect();
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n| scenario | ours: peak RSS MiB | Go peer: peak RSS MiB | ours ÷ Go |\n|---|---:|---:|---:|\n",
    );
    for (ours, theirs) in pairs {
        out.push_str(&format!(
            "| {} | {} ({}) | {} ({}) | {} |\n",
            ours.name,
            cell(ours.serving_peak_mib(), 1),
            ours.serving(),
            cell(theirs.serving_peak_mib(), 1),
            theirs.serving(),
            cell(ours.rss_ratio_to_peer, 2)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RoundFigures;

    #[test]
    fn cold_starts_are_parsed_or_refused() {
        assert_eq!(
            ColdStart::parse("user-service=84.5"),
            Ok(ColdStart {
                name: "user-service".into(),
                millis: 84.5
            })
        );
        assert!(ColdStart::parse("user-service").is_err());
        assert!(ColdStart::parse("user-service=").is_err());
        assert!(ColdStart::parse("user-service=-3").is_err());
        assert!(ColdStart::parse("user-service=NaN").is_err());
    }

    fn scenario(name: &str, processes: &[&str], peak: &[(&str, f64)]) -> Figures {
        let round = RoundFigures {
            requests_per_second: 1.0,
            p50_ms: 1.0,
            p99_ms: 1.0,
            requests: 1,
            cpu_us: HashMap::new(),
            wall_seconds: 1.0,
            rss_peak_mib: peak
                .iter()
                .map(|(name, mib)| ((*name).to_owned(), *mib))
                .collect(),
            rss_mean_mib: HashMap::new(),
        };
        Figures::from_rounds(name, processes, &[vec![round]], 0, 0, None)
    }

    #[test]
    fn the_cluster_is_summed_and_every_figure_shown() {
        let idle = HashMap::from([
            ("user-service".to_owned(), 10.0),
            ("consignment-service".to_owned(), 12.5),
            ("api-gateway".to_owned(), 7.5),
            ("go-peer".to_owned(), 9.0),
        ]);
        let starts = [ColdStart::parse("api-gateway=131").unwrap()];
        let listening = [ColdStart::parse("api-gateway=12").unwrap()];
        let footprint =
            Footprint::new(idle, &starts, &listening, Images::not_measured("no docker"));
        // Only the cluster's five count, and only those measured.
        assert_eq!(footprint.cluster_idle_rss_mib, 30.0);
        assert_eq!(footprint.cluster[4].cold_start_ms, Some(131.0));
        assert_eq!(footprint.cluster[2].idle_rss_mib, None);

        let mut ours = scenario(
            "Get",
            &["consignment-service"],
            &[("consignment-service", 20.0)],
        );
        let theirs = scenario("Get, Go peer", &["go-peer"], &[("go-peer", 25.0)]);
        ours.compare_with(&theirs);
        let text = footprint.markdown(&[ours, theirs]);
        for shown in [
            "| consignment-service | 12.5 | 20.0 | – |",
            "| go-peer | 9.0 | – | 25.0 |",
            "| Get | 20.0 (consignment-service) | 25.0 (go-peer) | 0.80 |",
            "| api-gateway | 7.5 | 12 | 131 |",
            "| **all five** | **30.0** | | |",
            "no docker",
        ] {
            assert!(text.contains(shown), "{shown:?} not in {text}");
        }
    }
}
