//! The figures of a `make bench` run: medians over the rounds, the goals, and
//! how they are shown (a Markdown table, JSON, an SVG chart).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::footprint::Footprint;

/// One scenario's figures in one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundFigures {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// CPU time per request of each process involved, in µs.
    pub cpu_us: HashMap<String, f64>,
    pub wall_seconds: f64,
    /// Resident memory of each process involved during the timed run, in
    /// MiB: the peak and the mean of samples every 250 ms (`VmRSS`;
    /// PostgreSQL's processes' `Pss` summed: see `memory.rs`).
    pub rss_peak_mib: HashMap<String, f64>,
    pub rss_mean_mib: HashMap<String, f64>,
}

/// One scenario's figures: the median over the rounds of each.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub name: String,
    /// The processes involved, the serving one first.
    pub processes: Vec<String>,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us: BTreeMap<String, f64>,
    /// Its throughput over the echo's, in the same round.
    pub ratio_to_echo: f64,
    /// Its throughput over the Go peer's, in the same round.
    pub ratio_to_peer: Option<f64>,
    /// Each process's peak and mean resident memory during a timed run, in
    /// MiB (the median over the rounds).
    pub rss_peak_mib: BTreeMap<String, f64>,
    pub rss_mean_mib: BTreeMap<String, f64>,
    /// The scenario it is compared with (the Go peer's), if any.
    pub peer: Option<String>,
    /// Its serving process's peak resident memory over the peer's.
    pub rss_ratio_to_peer: Option<f64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| value.is_finite());
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

impl Figures {
    /// Scenario `index`'s medians over `rounds`, with per-round ratios to
    /// scenario `echo` and to `peer`.
    pub fn from_rounds(
        name: &str,
        processes: &[&str],
        rounds: &[Vec<RoundFigures>],
        index: usize,
        echo: usize,
        peer: Option<usize>,
    ) -> Self {
        let of = |pick: &dyn Fn(&[RoundFigures]) -> f64| {
            median(rounds.iter().map(|round| pick(round)).collect())
        };
        // Each process's median of one per-process figure; a process with
        // no figure in any round (gone, unreadable) is left out.
        let per_process = |pick: &dyn Fn(&RoundFigures) -> &HashMap<String, f64>| {
            processes
                .iter()
                .map(|process| {
                    let value = of(&|round| {
                        pick(&round[index])
                            .get(*process)
                            .copied()
                            .unwrap_or(f64::NAN)
                    });
                    ((*process).to_owned(), value)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let cpu_us = per_process(&|round| &round.cpu_us);
        let measured = |figures: BTreeMap<String, f64>| {
            figures
                .into_iter()
                .filter(|(_, value)| *value > 0.0)
                .collect()
        };
        Self {
            name: name.to_owned(),
            processes: processes
                .iter()
                .map(|process| (*process).to_owned())
                .collect(),
            requests_per_second: of(&|round| round[index].requests_per_second),
            p50_ms: of(&|round| round[index].p50_ms),
            p99_ms: of(&|round| round[index].p99_ms),
            cpu_us,
            ratio_to_echo: of(&|round| {
                round[index].requests_per_second / round[echo].requests_per_second
            }),
            ratio_to_peer: peer.map(|peer| {
                of(&|round| round[index].requests_per_second / round[peer].requests_per_second)
            }),
            rss_peak_mib: measured(per_process(&|round| &round.rss_peak_mib)),
            rss_mean_mib: measured(per_process(&|round| &round.rss_mean_mib)),
            peer: None,
            rss_ratio_to_peer: None,
        }
    }

    /// The process that serves the scenario's requests.
    pub fn serving(&self) -> &str {
        self.processes
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The serving process's median peak resident memory, in MiB.
    pub fn serving_peak_mib(&self) -> Option<f64> {
        self.rss_peak_mib.get(self.serving()).copied()
    }

    /// Names `peer` as the scenario this one is compared with, and compares
    /// their serving processes' peak memory.
    pub fn compare_with(&mut self, peer: &Self) {
        self.peer = Some(peer.name.clone());
        self.rss_ratio_to_peer = self
            .serving_peak_mib()
            .zip(peer.serving_peak_mib())
            .map(|(ours, theirs)| ours / theirs);
    }

    /// The median CPU µs per request of `process` (0 if not involved).
    pub fn cpu_us(&self, process: &str) -> f64 {
        self.cpu_us.get(process).copied().unwrap_or(0.0)
    }
}

/// A scenario measured with tonic clients (the login flood).
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub name: String,
    pub concurrency: usize,
    /// Calls answered (only these are throughput and latency).
    pub requests: u64,
    /// Calls the service shed (RESOURCE_EXHAUSTED): a flood meets these.
    pub shed: u64,
    pub errors: u64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A target of the benchmark and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    /// `>=` or `<=`.
    pub relation: &'static str,
    pub target: f64,
    pub measured: f64,
    pub met: bool,
}

impl Goal {
    pub fn at_least(goal: &str, target: f64, measured: f64) -> Self {
        Self {
            goal: goal.to_owned(),
            relation: ">=",
            target,
            measured,
            met: measured >= target,
        }
    }

    pub fn at_most(goal: &str, target: f64, measured: f64) -> Self {
        Self {
            goal: goal.to_owned(),
            relation: "<=",
            target,
            measured,
            met: measured <= target && measured > 0.0,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub cores: usize,
    pub rounds: usize,
    pub seconds_per_run: u64,
    pub in_flight: usize,
    pub load_generator: String,
    pub bcrypt_cost: u32,
    pub bcrypt_verify_ms: f64,
    pub scenarios: Vec<Figures>,
    pub login_flood: Vec<Probe>,
    pub goals: Vec<Goal>,
    /// Memory at idle, the cluster's cold starts, the compose images.
    pub footprint: Footprint,
    pub raw_rounds: Vec<Vec<RoundFigures>>,
}

/// A figure per process as `name 12.3, other 4.5`, in `order`.
pub fn per_process_text(figures: &HashMap<String, f64>, order: &[&str]) -> String {
    order
        .iter()
        .filter_map(|name| Some(format!("{name} {:.1}", figures.get(*name)?)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row of a Markdown table: `cells` between bars, and a new line.
fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// `value` with `decimals` decimals, or `–` where there is none.
pub fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.decimals$}"))
}

impl Report {
    /// The run as Markdown: the scenarios' table, the login flood, the goals.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{}{} cores; {} rounds of {} s per scenario, {} in flight, {}; medians over the rounds\n\n\
             | scenario | req/s | p50 ms | p99 ms | service CPU µs/req | vessel-service CPU µs/req | PostgreSQL CPU µs/req | ratio to echo | ours ÷ Go peer | service RSS MiB, idle → peak |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            if self.label.is_empty() {
                String::new()
            } else {
                format!("{}: ", self.label)
            },
            self.cores,
            self.rounds,
            self.seconds_per_run,
            self.in_flight,
            self.load_generator
        );
        for figures in &self.scenarios {
            let serving = figures.serving();
            out.push_str(&format!(
                "| {} | {:.0} | {:.2} | {:.2} | {} ({serving}) | {} | {} | {:.3} | {} | {} → {} |\n",
                figures.name,
                figures.requests_per_second,
                figures.p50_ms,
                figures.p99_ms,
                cell(figures.cpu_us.get(serving).copied(), 1),
                cell(figures.cpu_us.get("vessel-service").copied(), 1),
                cell(figures.cpu_us.get("postgres").copied(), 1),
                figures.ratio_to_echo,
                cell(figures.ratio_to_peer, 2),
                cell(self.footprint.idle_rss_mib.get(serving).copied(), 1),
                cell(figures.serving_peak_mib(), 1),
            ));
        }
        out.push_str(&format!(
            "\nLogin flood (tonic clients; bcrypt cost {}, one verify {:.0} ms):\n\n\
             | probe | in flight | answered/s | p50 ms | p99 ms | shed | errors |\n|---|---:|---:|---:|---:|---:|---:|\n",
            self.bcrypt_cost, self.bcrypt_verify_ms
        ));
        for probe in &self.login_flood {
            out.push_str(&row(&[
                probe.name.to_string(),
                probe.concurrency.to_string(),
                format!("{:.1}", probe.requests_per_second),
                format!("{:.2}", probe.p50_ms),
                format!("{:.2}", probe.p99_ms),
                probe.shed.to_string(),
                probe.errors.to_string(),
            ]));
        }
        out.push_str(&self.footprint.markdown(&self.scenarios));
        out.push_str("\n| goal | target | measured | |\n|---|---:|---:|---|\n");
        for goal in &self.goals {
            let verdict = if goal.met { "met" } else { "**not met**" };
            out.push_str(&row(&[
                goal.goal.to_string(),
                format!("{} {:.2}", goal.relation, goal.target),
                format!("{:.2}", goal.measured),
                verdict.to_owned(),
            ]));
        }
        out
    }
}

/// Each scenario's throughput as a ratio to the echo's, as bars.
pub fn svg(report: &Report) -> String {
    let bars: Vec<(&str, f64)> = report
        .scenarios
        .iter()
        .map(|figures| (figures.name.as_str(), figures.ratio_to_echo))
        .collect();
    let (width, row, left) = (860.0, 34.0, 260.0);
    let height = 70.0 + row * bars.len() as f64;
    let scale = (width - left - 90.0) / bars.iter().map(|(_, ratio)| *ratio).fold(1.0, f64::max);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" font-size="15" font-weight="bold">Throughput as a ratio to a bare tonic echo server (same rounds, {} cores, {} in flight, h2load)</text>
"#,
        report.cores, report.in_flight
    );
    for (index, (name, ratio)) in bars.iter().enumerate() {
        let y = 44.0 + row * index as f64;
        let bar = (ratio * scale).max(1.0);
        let colour = if name.contains("Go peer") {
            "#b5894a"
        } else {
            "#4a7ab5"
        };
        out.push_str(&format!(
            r##"<text x="10" y="{}">{name}</text><rect x="{left}" y="{y}" width="{bar:.1}" height="22" fill="{colour}"/><text x="{:.1}" y="{}">{ratio:.3}</text>
"##,
            y + 16.0,
            left + bar + 6.0,
            y + 16.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(rps: &[f64]) -> Vec<RoundFigures> {
        rps.iter()
            .map(|rps| RoundFigures {
                requests_per_second: *rps,
                p50_ms: 1.0,
                p99_ms: 2.0,
                requests: 10,
                cpu_us: HashMap::from([("svc".to_owned(), *rps / 100.0)]),
                wall_seconds: 1.0,
                rss_peak_mib: HashMap::from([("svc".to_owned(), *rps / 10.0)]),
                rss_mean_mib: HashMap::from([("svc".to_owned(), *rps / 20.0)]),
            })
            .collect()
    }

    #[test]
    fn ratios_are_taken_per_round_then_the_median() {
        // Echo, ours, the peer: the machine slows down in round 2, but the
        // per-round ratios stay put.
        let rounds = vec![
            round(&[1000.0, 200.0, 100.0]),
            round(&[500.0, 100.0, 50.0]),
            round(&[1000.0, 200.0, 100.0]),
        ];
        let ours = Figures::from_rounds("ours", &["svc"], &rounds, 1, 0, Some(2));
        assert!((ours.ratio_to_echo - 0.2).abs() < 1e-9);
        assert_eq!(ours.ratio_to_peer, Some(2.0));
        assert!((ours.requests_per_second - 200.0).abs() < 1e-9);
        assert!((ours.cpu_us("svc") - 2.0).abs() < 1e-9);
        assert_eq!(ours.cpu_us("absent"), 0.0);
        assert_eq!(ours.rss_peak_mib["svc"], 20.0);
        assert_eq!(ours.rss_mean_mib["svc"], 10.0);
    }

    #[test]
    fn memory_is_compared_with_the_peers_serving_process() {
        let mut rounds = vec![round(&[1000.0, 200.0, 100.0])];
        rounds[0][2].rss_peak_mib = HashMap::from([("go".to_owned(), 40.0)]);
        let mut ours = Figures::from_rounds("ours", &["svc", "db"], &rounds, 1, 0, Some(2));
        let theirs = Figures::from_rounds("theirs", &["go", "db"], &rounds, 2, 0, None);
        // A process never measured has no memory figure, not a zero.
        assert!(!ours.rss_peak_mib.contains_key("db"));
        ours.compare_with(&theirs);
        assert_eq!(ours.peer.as_deref(), Some("theirs"));
        assert_eq!(ours.rss_ratio_to_peer, Some(0.5));
    }

    #[test]
    fn goals_compare_in_their_direction() {
        assert!(Goal::at_least("x", 1.3, 1.4).met);
        assert!(!Goal::at_least("x", 1.3, 1.2).met);
        assert!(Goal::at_most("x", 45.0, 40.0).met);
        assert!(!Goal::at_most("x", 45.0, 50.0).met);
        // Nothing measured is not a CPU cost met.
        assert!(!Goal::at_most("x", 45.0, 0.0).met);
        assert_eq!(median(vec![3.0, 1.0, 2.0, f64::NAN]), 2.0);
    }
}
