//! The load: h2load (Debian's nghttp2-client) sending one gRPC request over
//! and over, 64 in flight. It outruns any load generator built on a gRPC
//! client library on these cores, so the servers, not the load, are what a
//! figure measures.
//!
//! h2load knows HTTP/2, not gRPC: a gRPC error is an HTTP 200 to it. So a run
//! is only accepted when the response bytes add up to every request having
//! been answered with a message ([`Expect`]): an error carries no message.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

/// One RPC as h2load sends it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `http://host:port/package.Service/Method`.
    pub url: String,
    /// The request message, gRPC-framed, in a file.
    pub body: PathBuf,
    /// A bearer token to send, if the RPC needs one.
    pub token: Option<String>,
}

/// What every answer must carry for the run to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this many bytes of gRPC message (frame header included).
    Exactly(u64),
    /// Within this range (a message whose size varies a little).
    Between(u64, u64),
}

/// The figures of one timed run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub requests: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Writes `message` gRPC-framed (uncompressed, length-prefixed) to `path`.
pub fn write_body(path: &Path, message: &impl prost::Message) -> anyhow::Result<()> {
    std::fs::write(path, frame(message)).with_context(|| format!("write {}", path.display()))
}

/// `message` as a gRPC frame: a zero byte, its length (big-endian), itself.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut framed = Vec::with_capacity(encoded.len() + 5);
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(encoded.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(&encoded);
    framed
}

/// Runs h2load against `call` for `seconds` with `clients` connections of
/// `streams` requests in flight each, and checks every answer by `expect`.
pub fn run(
    call: &Call,
    clients: usize,
    streams: usize,
    seconds: u64,
    expect: Expect,
    log: &Path,
) -> anyhow::Result<Run> {
    // h2load appends to its log: each run starts with none.
    match std::fs::remove_file(log) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("remove {}", log.display()));
        }
        _ => {}
    }
    let mut command = Command::new("h2load");
    command
        .args([
            "-t",
            "1",
            "-c",
            &clients.to_string(),
            "-m",
            &streams.to_string(),
        ])
        .args(["-D", &seconds.to_string()])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("-d")
        .arg(&call.body)
        .arg("--log-file")
        .arg(log);
    if let Some(token) = &call.token {
        command.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    let output = command
        .arg(&call.url)
        .output()
        .context("run h2load (apt-get install nghttp2-client)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "h2load failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let summary =
        Summary::parse(&text).with_context(|| format!("read h2load's output:\n{text}"))?;
    summary
        .check(expect)
        .with_context(|| format!("{}: the run is not counted\n{text}", call.url))?;
    let (p50_ms, p99_ms) = latencies(log)?;
    Ok(Run {
        requests: summary.done,
        seconds: summary.seconds,
        p50_ms,
        p99_ms,
    })
}

/// What h2load printed of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub seconds: f64,
    pub started: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    pub data_bytes: u64,
}

impl Summary {
    /// Reads the `finished in`, `requests:` and `traffic:` lines.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut summary = Self::default();
        let (mut finished, mut requests, mut traffic) = (false, false, false);
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                let took = rest.split(',').next().unwrap_or_default().trim();
                summary.seconds = match took.strip_suffix("ms") {
                    Some(millis) => millis.parse::<f64>()? / 1000.0,
                    None => took.trim_end_matches('s').parse()?,
                };
                finished = true;
            } else if let Some(rest) = line.strip_prefix("requests: ") {
                for part in rest.split(',').map(str::trim) {
                    let (count, what) = part.split_once(' ').context("a count and its name")?;
                    let count: u64 = count.parse()?;
                    match what {
                        "started" => summary.started = count,
                        "done" => summary.done = count,
                        "succeeded" => summary.succeeded = count,
                        "failed" => summary.failed = count,
                        "errored" => summary.errored = count,
                        "timeout" => summary.timeout = count,
                        _ => {}
                    }
                }
                requests = true;
            } else if let Some(rest) = line.strip_prefix("traffic: ") {
                // `… total, … headers (…), 35.76MB (37500000) data`
                let data = rest.rsplit(',').next().unwrap_or_default();
                let exact = data
                    .split_once('(')
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .context("the exact data bytes")?
                    .0;
                summary.data_bytes = exact.parse()?;
                traffic = true;
            }
        }
        if !(finished && requests && traffic) {
            bail!("no finished/requests/traffic lines");
        }
        Ok(summary)
    }

    /// Whether every request finished and was answered with a message.
    pub fn check(&self, expect: Expect) -> anyhow::Result<()> {
        if self.done == 0 {
            bail!("no request finished");
        }
        if self.failed + self.errored + self.timeout > 0 || self.succeeded != self.done {
            bail!(
                "{} failed, {} errored, {} timed out of {} done",
                self.failed,
                self.errored,
                self.timeout,
                self.done
            );
        }
        let (low, high) = match expect {
            Expect::Exactly(size) => (size, size),
            Expect::Between(low, high) => (low, high),
        };
        // Answers still arriving when the time was up may add bytes.
        let in_flight = self.started.saturating_sub(self.done);
        if self.data_bytes < self.done * low || self.data_bytes > (self.done + in_flight) * high {
            bail!(
                "{} requests done but {} bytes of answers: {} to {} bytes each were expected \
                 (a gRPC error carries none)",
                self.done,
                self.data_bytes,
                low,
                high
            );
        }
        Ok(())
    }
}

/// The median and 99th percentile of h2load's per-request log, in ms; any
/// HTTP status but 200 fails.
fn latencies(log: &Path) -> anyhow::Result<(f64, f64)> {
    let text = std::fs::read_to_string(log).with_context(|| format!("read {}", log.display()))?;
    let mut histogram = Histogram::<u64>::new(3)?;
    for line in text.lines() {
        let mut columns = line.split('\t');
        let (_, status, micros) = (columns.next(), columns.next(), columns.next());
        if status != Some("200") {
            bail!("h2load logged an answer that is not HTTP 200: `{line}`");
        }
        let micros: u64 = micros.context("a duration")?.trim().parse()?;
        histogram.record(micros.max(1))?;
    }
    if histogram.is_empty() {
        bail!("h2load logged no request");
    }
    Ok((
        histogram.value_at_quantile(0.50) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "
finished in 5.00s, 150123.40 req/s, 9.74MB/s
requests: 750617 total, 750681 started, 750617 done, 750617 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 750617 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 48.71MB (51074412) total, 2.15MB (2251851) headers (space savings 95.24%), 51.54MB (54044424) data
";

    #[test]
    fn reads_h2loads_summary() {
        let summary = Summary::parse(OUTPUT).unwrap();
        assert_eq!(summary.done, 750_617);
        assert_eq!(summary.started, 750_681);
        assert_eq!(summary.data_bytes, 54_044_424);
        assert!((summary.seconds - 5.0).abs() < 1e-9);
        assert!(Summary::parse("nothing useful").is_err());
    }

    #[test]
    fn a_run_counts_only_when_every_answer_carried_its_message() {
        let summary = Summary::parse(OUTPUT).unwrap();
        assert!(summary.check(Expect::Exactly(72)).is_ok());
        // One answer in a thousand an error (no message): refused.
        let errors = Summary {
            data_bytes: 72 * (summary.done - summary.done / 1000),
            started: summary.done,
            ..summary
        };
        assert!(errors.check(Expect::Exactly(72)).is_err());
        assert!(summary.check(Expect::Exactly(80)).is_err());
        assert!(summary.check(Expect::Between(70, 75)).is_ok());
        let failed = Summary {
            failed: 1,
            ..summary
        };
        assert!(failed.check(Expect::Exactly(72)).is_err());
    }

    #[test]
    fn frames_are_length_prefixed() {
        let framed = frame(&shippy_proto::bench::v1::EchoRequest {
            payload: vec![1, 2, 3],
        });
        assert_eq!(framed, [0, 0, 0, 0, 5, 10, 3, 1, 2, 3]);
    }
}
