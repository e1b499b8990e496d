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

/// Completed operations per second (ok, fail, indeterminate) over the run,
/// faults as shaded bands labelled with kind and target.
pub fn throughput_svg(history: &[Entry], window: (f64, f64)) -> String {
    let end = history
        .iter()
        .map(|entry| entry.time)
        .fold(1.0_f64, f64::max)
        .ceil() as usize;
    let mut buckets = vec![[0usize; 3]; end + 1];
    for entry in history.iter().filter(|entry| entry.process != "nemesis") {
        let slot = match entry.kind {
            Kind::Ok => 0,
            Kind::Fail => 1,
            Kind::Indeterminate => 2,
            _ => continue,
        };
        if let Some(bucket) = buckets.get_mut(entry.time as usize) {
            bucket[slot] += 1;
        }
    }
    let peak = buckets
        .iter()
        .flat_map(|bucket| bucket.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (width, height, left, top, bottom) = (1000.0, 360.0, 50.0, 30.0, 40.0);
    let plot_w = width - left - 20.0;
    let plot_h = height - top - bottom;
    let x = |t: f64| left + t / end.max(1) as f64 * plot_w;
    let y = |v: f64| top + plot_h - v / peak * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="18" font-size="13">Operations completed per second; faults shaded (faults from {:.0} s to {:.0} s)</text>"#,
        window.0, window.1
    );
    // Faults: pair each start with its end.
    let mut open: BTreeMap<u64, &Entry> = BTreeMap::new();
    let mut lane = 0;
    for entry in history.iter().filter(|entry| entry.process == "nemesis") {
        match entry.kind {
            Kind::FaultStart => {
                open.insert(entry.seq, entry);
            }
            Kind::FaultEnd => {
                if let Some(start) = open.remove(&entry.seq) {
                    let colour = match start.op.as_str() {
                        "kill" => "#d62728",
                        "pause" => "#9467bd",
                        "partition-refuse" => "#ff7f0e",
                        _ => "#8c564b",
                    };
                    let (x0, x1) = (x(start.time), x(entry.time));
                    let label = escape(&format!("{} {}", start.op, start.via));
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="{colour}" fill-opacity="0.15"><title>{label} ({:.1}–{:.1} s)</title></rect>"#,
                        (x1 - x0).max(1.0),
                        start.time,
                        entry.time
                    );
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
    for (slot, (colour, name)) in [
        ("#2ca02c", "ok"),
        ("#1f77b4", "fail"),
        ("#d62728", "indeterminate"),
    ]
    .into_iter()
    .enumerate()
    {
        let points: Vec<String> = buckets
            .iter()
            .enumerate()
            .map(|(t, bucket)| format!("{:.1},{:.1}", x(t as f64 + 0.5), y(bucket[slot] as f64)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{name}</text>"#,
            left + plot_w - 240.0 + slot as f64 * 70.0,
            height - 8.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
