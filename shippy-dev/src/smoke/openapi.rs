//! The api-gateway's OpenAPI document against the gateway itself: user-,
//! vessel- and consignment-service and api-gateway started from their
//! binaries (fresh databases, rate limits out of the way), an admin signed
//! up and logged in, then Schemathesis (PyPI, a pinned version in a
//! virtualenv cached outside the clone) fuzzes every operation of
//! /api/openapi.json with the admin's token (examples, coverage, fuzzing and
//! stateful sequences along the links it infers): no 5xx, every answer's
//! status, content type and body as documented, requests valid by the
//! document accepted and invalid ones refused. The report (JUnit, and the
//! failures' reproductions) in `OPENAPI_OUT` (default: target/openapi).
//!
//! After the run, it also fails unless all 9 operations were tested and the
//! gateway's own metrics show the protected routes succeeding: a run that
//! only met 401s or 403s behind the bearer and admin checks exercised
//! nothing.
//!
//! `OPENAPI_MAX_EXAMPLES` (default 200): test cases per operation and phase.
//! `OPENAPI_SEED`: the run's seed (default 1; `random` for a new one),
//! printed in the ok/not ok lines. `OPENAPI_ADMIN`: the address the run
//! signs up and logs in with (default: an admin; another is no admin, so the
//! run fails). `OPENAPI_SCHEMA=file`: fuzz against that document instead of
//! the served one. Needs `TEST_DATABASE_URL` and `TEST_NATS_URL`.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sha2::Digest as _;

use super::services::{Cluster, ClusterEnv, Databases};
use super::{Checks, http, python};
use crate::repo;

const REQUIREMENTS: &str = "scripts/smoke/openapi-requirements.txt";
/// Every operation of the document.
const OPERATIONS: u32 = 9;
/// Each protected route's success, as `METHOD ROUTE STATUS` in the gateway's metrics.
const SUCCESSES: [&str; 5] = [
    "POST /api/v1/vessels 201",
    "POST /api/v1/consignments 201",
    "DELETE /api/v1/consignments/{id} 200",
    "GET /api/v1/me 200",
    "GET /api/v1/ops 200",
];
/// The sign-up address pattern as Python (Hypothesis) reads it: a dot-atom
/// with any number of dots and at most 64 characters before the @.
const EMAIL_PATTERN_CHECK: &str = r#"
import json, re, sys
schemas = json.load(open(sys.argv[1]))["components"]["schemas"]
pattern = re.compile(schemas["NewUser"]["properties"]["email"]["pattern"])
for good in ["john.q.public@example.com", "a.b.c.d@mail.example.co.uk", "x" * 64 + "@example.com"]:
    assert pattern.search(good), f"sign-up pattern refuses {good}"
for bad in ["x" * 65 + "@example.com", "a..b@example.com", ".a@example.com", "a.@example.com", '"q"@example.com']:
    assert not pattern.search(bad), f"sign-up pattern takes {bad}"
"#;

/// Runs it.
pub async fn run() -> anyhow::Result<ExitCode> {
    let mut checks = Checks::default();
    let (venv, version) = match schemathesis() {
        Ok(installed) => installed,
        Err(error) => {
            checks.not_ok(&format!("openapi: {error:#}"));
            return Ok(checks.exit_code());
        }
    };
    // Cheap when the binaries are fresh, and never a stale one fuzzed.
    let packages = [
        "user-service",
        "vessel-service",
        "consignment-service",
        "api-gateway",
    ];
    if let Err(error) = super::cargo_build(&packages, true) {
        eprintln!("{error:#}");
        checks.not_ok("openapi: cargo build the services and api-gateway");
        return Ok(checks.exit_code());
    }
    let admin_url = super::required_var("TEST_DATABASE_URL")?;
    let nats_url = super::required_var("TEST_NATS_URL")?;
    let out = super::out_dir("OPENAPI_OUT", "openapi");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let (databases, urls) = Databases::for_cluster("openapi", &admin_url).await?;
    let run_dir = super::run_dir("openapi")?;
    let fuzz = Fuzz {
        venv,
        version,
        out: out.clone(),
        run_dir: run_dir.clone(),
    };
    let result = fuzz.smoke(&mut checks, urls, nats_url).await;
    // The services' logs for the report (Cluster stopped them, whatever happened).
    if let Ok(logs) = std::fs::read_dir(&run_dir) {
        for log in logs.flatten() {
            if log.path().extension().is_some_and(|ext| ext == "log") {
                let _ = std::fs::copy(log.path(), out.join(log.file_name()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    databases.drop_all().await;
    result
}

/// Schemathesis and all it needs at the versions of the requirements file,
/// in a virtualenv cached outside the clone under the hash of that file and
/// of the Python that runs it (another list or Python: another venv); its
/// directory and Schemathesis's version.
fn schemathesis() -> anyhow::Result<(PathBuf, String)> {
    let requirements = repo().join(REQUIREMENTS);
    let list = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {REQUIREMENTS}"))?;
    let version = list
        .lines()
        .find_map(|line| line.strip_prefix("schemathesis=="))
        .context("no schemathesis== line in the requirements")?
        .trim()
        .to_owned();
    let key = sha2::Sha256::digest(format!("{list}{}", python::version()?));
    let key: String = key
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let cache = crate::provision::cache_dir();
    let venv = cache.join(format!("schemathesis-venv-{key}"));
    // A venv cannot move (its scripts name its path): made in place, and
    // marked complete last, so an interrupted install is made again.
    let installed = venv.join("installed").is_file()
        && std::process::Command::new(venv.join("bin/schemathesis"))
            .arg("--version")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(&version));
    if !installed {
        std::fs::create_dir_all(&cache)?;
        let _ = std::fs::remove_dir_all(&venv);
        python::make_venv(&venv)?;
        let python = venv.join("bin/python");
        let requirements_text = requirements.to_string_lossy();
        let checked = || {
            std::process::Command::new(&python)
                .args(["-m", "pip", "check"])
                .stdout(std::io::stderr())
                .status()
                .is_ok_and(|status| status.success())
        };
        if !python::pip_install(&python, &["-r", &requirements_text], false)
            || !checked()
            || std::fs::copy(&requirements, venv.join("installed")).is_err()
        {
            bail!("install {REQUIREMENTS} from PyPI into {}", venv.display());
        }
    }
    Ok((venv, version))
}

/// One fuzz run's places.
#[derive(Debug)]
struct Fuzz {
    venv: PathBuf,
    version: String,
    out: PathBuf,
    run_dir: PathBuf,
}

impl Fuzz {
    async fn smoke(
        &self,
        checks: &mut Checks,
        database_urls: [String; 3],
        nats_url: String,
    ) -> anyhow::Result<ExitCode> {
        let pid = std::process::id();
        let admin = format!("admin-{pid}@example.com");
        let many = || "100000".to_owned();
        // The fuzzer sends thousands of requests from one address, and logs in
        // with made-up passwords: every limit is raised far above that (the
        // defaults are tested by the gateway's and user-service's own tests).
        let env = ClusterEnv {
            rust_log: "warn",
            user: [
                ClusterEnv::user_settings("openapi", nats_url, &admin),
                vec![
                    ("LOGIN_MAX_FAILURES", "1000000".into()),
                    ("LOGIN_MAX_FAILURES_PER_ADDRESS", "1000000".into()),
                ],
            ]
            .concat(),
            vessel: vec![
                ("ACCOUNT_MAX_CONTAINERS", "2000000000".into()),
                ("ACCOUNT_MAX_WEIGHT", "2000000000".into()),
            ],
            consignment: Vec::new(),
            gateway: vec![
                ("RATE_LIMIT_PER_SECOND", many()),
                ("RATE_LIMIT_BURST", many()),
                ("LOGIN_RATE_LIMIT_PER_SECOND", many()),
                ("LOGIN_RATE_LIMIT_BURST", many()),
            ],
        };
        let bin = super::bin_dir();
        let started = Cluster::start_ready(
            checks,
            "openapi",
            &bin,
            &self.run_dir,
            database_urls,
            env,
            600,
        );
        let Some(cluster) = started.await else {
            return Ok(checks.exit_code());
        };
        let url = cluster.url();

        let fuzzer = std::env::var("OPENAPI_ADMIN").unwrap_or(admin);
        let Some(token) = log_in(&url, &fuzzer).await else {
            checks.not_ok("openapi: an admin signs up and logs in through the gateway");
            return Ok(checks.exit_code());
        };
        checks.ok(&format!(
            "openapi: api-gateway is ready at {url} (services from their binaries), {fuzzer} logged in"
        ));

        let schema =
            std::env::var("OPENAPI_SCHEMA").unwrap_or_else(|_| format!("{url}/api/openapi.json"));
        let document = self.run_dir.join("document.json");
        if !self.email_pattern_holds(&schema, &document).await {
            checks.not_ok(
                "openapi: the document's sign-up email pattern is a dot-atom of at most 64 characters",
            );
            return Ok(checks.exit_code());
        }
        checks.ok(
            "openapi: the document's sign-up email pattern takes dot-atoms of up to 64 characters (Python re)",
        );

        let seed = match std::env::var("OPENAPI_SEED").as_deref() {
            Ok("random") => {
                use rand::Rng as _;
                rand::rng().random_range(0..2_u32.pow(31)).to_string()
            }
            Ok(seed) => seed.to_owned(),
            Err(_) => "1".to_owned(),
        };
        let started = Instant::now();
        let status = self.schemathesis(&schema, &url, &token, &seed).await?;
        let took = started.elapsed().as_secs();
        let statuses = self.statuses(cluster.gateway_metrics()).await?;
        drop(cluster);
        self.verdict(checks, status, took, &seed, &statuses)
    }

    /// Runs Schemathesis (at most 900 s); its exit code (124: out of time).
    async fn schemathesis(
        &self,
        schema: &str,
        url: &str,
        token: &str,
        seed: &str,
    ) -> anyhow::Result<i32> {
        let log = std::fs::File::create(self.out.join("schemathesis.log"))
            .context("cannot create schemathesis.log")?;
        let max_examples =
            std::env::var("OPENAPI_MAX_EXAMPLES").unwrap_or_else(|_| "200".to_owned());
        let mut child = tokio::process::Command::new(self.venv.join("bin/schemathesis"))
            .args(["--config-file", "scripts/smoke/openapi.toml", "run", schema])
            .args(["--url", url])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance,negative_data_rejection"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", &max_examples, "--seed", seed])
            .args(["--workers", "2", "--request-timeout", "10"])
            .args(["--generation-database", "none", "--no-color", "--output-sanitize", "false"])
            .args(["--report", "junit", "--report-dir"])
            .arg(super::shown(&self.out))
            .current_dir(repo())
            .env("PYTHONPATH", "scripts/smoke")
            .env("SCHEMATHESIS_HOOKS", "openapi_hooks")
            // Nothing written into the clone: Hypothesis's examples database
            // and Python's bytecode of the hooks stay out of it.
            .env("HYPOTHESIS_STORAGE_DIRECTORY", self.run_dir.join("hypothesis"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run schemathesis from its virtualenv")?;
        let status = match tokio::time::timeout(Duration::from_secs(900), child.wait()).await {
            Ok(status) => status?.code().unwrap_or(1),
            Err(_) => {
                let _ = child.kill().await;
                eprintln!("openapi: schemathesis did not finish in 900 s");
                124
            }
        };
        // The run's summary (and, on failure, each failure with its curl to
        // reproduce it) for the log.
        let text = std::fs::read_to_string(self.out.join("schemathesis.log")).unwrap_or_default();
        eprintln!("{}", section(&text, "SUMMARY", None, 200));
        if status != 0 {
            eprintln!("{}", section(&text, "FAILURES", Some("SUMMARY"), 300));
        }
        Ok(status)
    }

    /// The document at `schema` (a URL, else a file) into `document`, and
    /// whether its sign-up email pattern, as Python reads it, takes exactly
    /// dot-atoms of at most 64 characters.
    async fn email_pattern_holds(&self, schema: &str, document: &Path) -> bool {
        let fetched = match http::get(schema, &[]).await {
            Ok(answer) if answer.is_success() => std::fs::write(document, answer.body).is_ok(),
            _ => false,
        };
        if !fetched && std::fs::copy(repo().join(schema), document).is_err() {
            return false;
        }
        std::process::Command::new("python3")
            .args(["-c", EMAIL_PATTERN_CHECK])
            .arg(document)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(std::io::stderr())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// What the gateway answered during the run, by route and status (its
    /// own metrics), as sorted `METHOD ROUTE STATUS: COUNT` lines, also in
    /// statuses.txt and on stderr: the fuzz reached the services, not only
    /// the edge's refusals.
    async fn statuses(&self, metrics: Option<std::net::SocketAddr>) -> anyhow::Result<Vec<String>> {
        let body = match metrics {
            Some(address) => http::get(&format!("http://{address}/metrics"), &[])
                .await
                .ok()
                .filter(http::Answer::is_success)
                .map(|answer| answer.body)
                .unwrap_or_default(),
            None => String::new(),
        };
        let mut lines: Vec<String> = body.lines().filter_map(status_line).collect();
        lines.sort();
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(self.out.join("statuses.txt"), &text)?;
        eprintln!("openapi: the gateway's answers during the run (method route status: count):");
        for line in &lines {
            eprintln!("    {line}");
        }
        Ok(lines)
    }

    /// The two closing lines, and the exit code.
    fn verdict(
        &self,
        checks: &mut Checks,
        status: i32,
        took: u64,
        seed: &str,
        statuses: &[String],
    ) -> anyhow::Result<ExitCode> {
        let text = std::fs::read_to_string(self.out.join("schemathesis.log")).unwrap_or_default();
        let operations = text.lines().find_map(|line| {
            let digits = line.trim_start().strip_prefix("Tested: ")?;
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            digits[..end].parse::<u32>().ok()
        });
        let cases = text.lines().find_map(|line| {
            let line = line.trim_start();
            let end = line
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(line.len());
            (end > 0 && line[end..].starts_with(" generated")).then(|| line.to_owned())
        });
        let summary = format!(
            "{} operations, {}, seed {seed}",
            operations.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            cases.as_deref().unwrap_or("no test cases"),
        );
        let version = &self.version;
        let out = super::shown(&self.out).display();
        if status == 0 {
            checks.ok(&format!(
                "openapi: schemathesis {version} found the gateway as its document says ({took}s; {summary})"
            ));
        } else {
            checks.not_ok(&format!(
                "openapi: schemathesis {version} found the gateway not as its document says (exit {status}, {took}s; {summary}; see {out}/schemathesis.log)"
            ));
        }
        // The fuzz reached behind the bearer check and the admin check: each
        // protected route succeeded at least once, and every operation was tested.
        let mut missing: Vec<String> = SUCCESSES
            .iter()
            .filter(|success| {
                !statuses
                    .iter()
                    .any(|line| line.starts_with(&format!("{success}: ")))
            })
            .map(|success| (*success).to_owned())
            .collect();
        if operations != Some(OPERATIONS) {
            missing.push(format!(
                "all {OPERATIONS} operations tested ({})",
                operations.map_or_else(|| "none".to_owned(), |n| n.to_string())
            ));
        }
        let what = format!(
            "openapi: the fuzz run reached every operation and the protected routes succeeded (seed {seed})"
        );
        if missing.is_empty() {
            checks.ok(&what);
        } else {
            let missing: String = missing.iter().map(|m| format!("{m}; ")).collect();
            checks.not_ok(&format!("{what}; missing: {missing}see {out}/statuses.txt"));
        }
        Ok(checks.exit_code())
    }
}

/// Signs `email` up (whatever the answer: it may exist) and logs it in
/// through the gateway at `url`; its token.
async fn log_in(url: &str, email: &str) -> Option<String> {
    let password = super::random_hex(16).ok()?;
    let _ = http::post_json(
        &format!("{url}/api/v1/users"),
        &serde_json::json!({"name": "Fuzz Admin", "email": email, "password": password}),
    )
    .await;
    let answer = http::post_json(
        &format!("{url}/api/v1/login"),
        &serde_json::json!({"email": email, "password": password}),
    )
    .await
    .ok()
    .filter(http::Answer::is_success)?;
    let body: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
    body.get("token")?
        .as_str()
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// `http_server_requests_total{method="M",route="R",status="S"} N` → `M R S: N`.
fn status_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix("http_server_requests_total{method=\"")?;
    let (method, rest) = rest.split_once("\",route=\"")?;
    let (route, rest) = rest.split_once("\",status=\"")?;
    let (status, count) = rest.split_once("\"} ")?;
    let all = |text: &str, what: fn(char) -> bool| !text.is_empty() && text.chars().all(what);
    (all(method, |c| c.is_ascii_uppercase())
        && !route.contains('"')
        && all(status, |c| c.is_ascii_digit())
        && all(count, |c| c.is_ascii_digit()))
    .then(|| format!("{method} {route} {status}: {count}"))
}

/// The lines of `text` from the first containing `from` to the first
/// (after it) containing `to` (or the end), at most `limit` of them.
fn section(text: &str, from: &str, to: Option<&str>, limit: usize) -> String {
    let mut lines = text.lines().skip_while(|line| !line.contains(from));
    let mut taken = Vec::new();
    if let Some(first) = lines.next() {
        taken.push(first);
        for line in lines {
            taken.push(line);
            if to.is_some_and(|to| line.contains(to)) {
                break;
            }
        }
    }
    taken.truncate(limit);
    taken.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metrics_line_becomes_method_route_status_count() {
        assert_eq!(
            status_line(
                r#"http_server_requests_total{method="DELETE",route="/api/v1/consignments/{id}",status="200"} 12"#
            )
            .as_deref(),
            Some("DELETE /api/v1/consignments/{id} 200: 12")
        );
        assert_eq!(
            status_line(r#"http_server_requests_total{method="GET",route="/x",status="200"} 1.5"#),
            None
        );
        assert_eq!(
            status_line("# TYPE http_server_requests_total counter"),
            None
        );
    }

    #[test]
    fn a_section_runs_from_its_heading_to_the_next() {
        let text = "a\n=== FAILURES ===\nb\n=== SUMMARY ===\nc";
        assert_eq!(
            section(text, "FAILURES", Some("SUMMARY"), 10),
            "=== FAILURES ===\nb\n=== SUMMARY ==="
        );
        assert_eq!(section(text, "SUMMARY", None, 10), "=== SUMMARY ===\nc");
        assert_eq!(section(text, "MISSING", None, 10), "");
    }
}
