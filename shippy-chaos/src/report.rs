//! The report: a Markdown summary, and throughput over time as SVG with
//! the faults marked.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::{
    history::{Entry, Kind},
    run::Report,
};

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut text = String::new();
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        text,
        "# Chaos soak: {verdict}\n\nstore `{}`, seed `{}`, faults from {:.1} s to {:.1} s, {} fleet samples\n",
        report.store, report.seed, report.fault_window.0, report.fault_window.1, report.samples
    );
    let _ = writeln!(
        text,
        "## Operations\n\n| operation | ok | fail | indeterminate |\n|---|---:|---:|---:|"
    );
    let mut sums = [0usize; 3];
    for (op, outcomes) in &report.operations {
        let counts =
            ["ok", "fail", "indeterminate"].map(|key| outcomes.get(key).copied().unwrap_or(0));
        for (sum, count) in sums.iter_mut().zip(counts) {
            *sum += count;
        }
        let _ = writeln!(
            text,
            "| {op} | {} | {} | {} |",
            counts[0], counts[1], counts[2]
        );
    }
    let _ = writeln!(
        text,
        "| **all** | {} | {} | {} |\n",
        sums[0], sums[1], sums[2]
    );
    let _ = writeln!(
        text,
        "## Faults\n\n| kind | target | count |\n|---|---|---:|"
    );
    for (kind, targets) in &report.faults {
        for (target, count) in targets {
            let _ = writeln!(text, "| {kind} | {target} | {count} |");
        }
    }
    let _ = writeln!(
        text,
        "\n## Invariants\n\n| invariant | checked | verdict |\n|---|---:|---|"
    );
    for verdict in &report.verdicts {
        let _ = writeln!(
            text,
            "| {} — {} | {} | {} |",
            verdict.name,
            verdict.promise,
            verdict.checked,
            if verdict.holds() {
                "holds".to_owned()
            } else {
                format!("**VIOLATED** ({})", verdict.counterexamples.len())
            }
        );
    }
    for verdict in report
        .verdicts
        .iter()
        .filter(|verdict| !verdict.notes.is_empty())
    {
        let _ = writeln!(text, "\n### {}: notes (allowed)\n", verdict.name);
        for note in &verdict.notes {
            let _ = writeln!(text, "- {note}");
        }
    }
    for verdict in report.verdicts.iter().filter(|verdict| !verdict.holds()) {
        let _ = writeln!(text, "\n### {}: counter-examples\n", verdict.name);
        for example in verdict.counterexamples.iter().take(50) {
            let _ = writeln!(text, "- {example}");
        }
        if verdict.counterexamples.len() > 50 {
            let _ = writeln!(text, "- … {} more", verdict.counterexamples.len() - 50);
        }
    }
    let _ = writeln!(text, "\n## Recovery after the last fault\n");
    for (service, took) in &report.recovery {
        match took {
            Some(took) => {
                let _ = writeln!(text, "- {service}: ready after {took:.1} s");
            }
            None => {
                let _ = writeln!(text, "- {service}: NOT ready");
            }
        }
    }
    let _ = writeln!(text, "\n## At the end\n");
    for (what, count) in &report.totals {
        let _ = writeln!(text, "- {what}: {count}");
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colour of a fault's kind in the plot.
fn colour(kind: &str) -> &'static str {
    match kind {
        "kill" => "#d62728",
        "pause" => "#9467bd",
        "partition-refuse" => "#ff7f0e",
        _ => "#8c564b",
    }
}

/// Completed operations per second (ok, fail, indeterminate) over the run,
/// averaged over wider buckets for a long run (about 300 points), faults as
/// shaded bands (labelled with kind and target when there are few).
pub fn throughput_svg(history: &[Entry], window: (f64, f64)) -> String {
    let end = history
        .iter()
        .map(|entry| entry.time)
        .fold(1.0_f64, f64::max)
        .ceil() as usize;
    let width = end.div_ceil(300).max(1);
    let mut counts = vec![[0usize; 3]; end / width + 1];
    for entry in history.iter().filter(|entry| entry.process != "nemesis") {
        let slot = match entry.kind {
            Kind::Ok => 0,
            Kind::Fail => 1,
            Kind::Indeterminate => 2,
            _ => continue,
        };
        if let Some(bucket) = counts.get_mut(entry.time as usize / width) {
            bucket[slot] += 1;
        }
    }
    let rates: Vec<[f64; 3]> = counts
        .iter()
        .map(|bucket| bucket.map(|count| count as f64 / width as f64))
        .collect();
    let peak = rates
        .iter()
        .flat_map(|bucket| bucket.iter().copied())
        .fold(1.0_f64, f64::max);
    let labelled = history
        .iter()
        .filter(|entry| entry.kind == Kind::FaultStart)
        .count()
        <= 40;
    let (svg_w, svg_h, left, top, bottom) = (1000.0, 380.0, 50.0, 30.0, 60.0);
    let plot_w = svg_w - left - 20.0;
    let plot_h = svg_h - top - bottom;
    let x = |t: f64| left + t / end.max(1) as f64 * plot_w;
    let y = |v: f64| top + plot_h - v / peak * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{svg_w}" height="{svg_h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="18" font-size="13">Operations completed per second (over {width} s); faults shaded (from {:.0} s to {:.0} s)</text>"#,
        window.0, window.1
    );
    // Faults: each start paired with its end.
    let mut open: BTreeMap<u64, &Entry> = BTreeMap::new();
    let mut lane = 0;
    for entry in history.iter().filter(|entry| entry.process == "nemesis") {
        match entry.kind {
            Kind::FaultStart => {
                open.insert(entry.seq, entry);
            }
            Kind::FaultEnd => {
                let Some(start) = open.remove(&entry.seq) else {
                    continue;
                };
                let colour = colour(&start.op);
                let (x0, x1) = (x(start.time), x(entry.time));
                let label = escape(&format!("{} {}", start.op, start.via));
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="{colour}" fill-opacity="0.15"><title>{label} ({:.1}–{:.1} s)</title></rect>"#,
                    (x1 - x0).max(1.0),
                    start.time,
                    entry.time
                );
                if labelled {
                    let _ = writeln!(
                        svg,
                        r#"<text x="{x0:.1}" y="{:.1}" fill="{colour}" font-size="9">{label}</text>"#,
                        top + 10.0 + f64::from(lane % 4) * 10.0
                    );
                    lane += 1;
                }
            }
            _ => {}
        }
    }
    // Axes.
    let _ = writeln!(
        svg,
        r#"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{0}" stroke="black"/>"#,
        top + plot_h,
        left + plot_w
    );
    for tick in 0..=5 {
        let value = peak * f64::from(tick) / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{value:.0}</text>"#,
            left - 4.0,
            y(value) + 4.0
        );
    }
    let step = (end / 10).max(1);
    for t in (0..=end).step_by(step) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t} s</text>"#,
            x(t as f64),
            top + plot_h + 16.0
        );
    }
    // Legend: outcomes, then fault kinds.
    let legend_y = svg_h - 12.0;
    for (n, (colour, name)) in [
        ("#2ca02c", "ok"),
        ("#1f77b4", "fail"),
        ("#d62728", "indeterminate"),
    ]
    .into_iter()
    .enumerate()
    {
        let points: Vec<String> = rates
            .iter()
            .enumerate()
            .map(|(bucket, rate)| {
                let middle = ((bucket * width) as f64 + width as f64 / 2.0).min(end as f64);
                format!("{:.1},{:.1}", x(middle), y(rate[n]))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="{colour}" stroke-width="2"/><text x="{3:.1}" y="{4:.1}">{name}</text>"#,
            left + n as f64 * 110.0,
            legend_y - 4.0,
            left + 16.0 + n as f64 * 110.0,
            left + 20.0 + n as f64 * 110.0,
            legend_y
        );
    }
    for (n, kind) in ["kill", "pause", "partition-refuse", "partition-blackhole"]
        .into_iter()
        .enumerate()
    {
        let at = left + 360.0 + n as f64 * 140.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{at:.1}" y="{:.1}" width="12" height="10" fill="{}" fill-opacity="0.4"/><text x="{:.1}" y="{legend_y:.1}">{kind}</text>"#,
            legend_y - 9.0,
            colour(kind),
            at + 16.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_marks_each_fault_and_escapes_its_label() {
        let entry = |time: f64, process: &str, kind: Kind, op: &str, via: &str| Entry {
            time,
            process: process.into(),
            seq: 1,
            kind,
            op: op.into(),
            via: via.into(),
            args: serde_json::Value::Null,
            result: serde_json::Value::Null,
        };
        let history = [
            entry(0.5, "c0", Kind::Ok, "create", "grpc"),
            entry(1.0, "nemesis", Kind::FaultStart, "kill", "<x>"),
            entry(2.0, "nemesis", Kind::FaultEnd, "kill", "<x>"),
            entry(2.5, "c0", Kind::Indeterminate, "create", "grpc"),
        ];
        let svg = throughput_svg(&history, (1.0, 2.0));
        assert!(
            svg.contains("<title>kill &lt;x&gt; (1.0–2.0 s)</title>"),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
