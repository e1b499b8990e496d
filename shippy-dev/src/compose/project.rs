//! Step 4: the project image, built by `docker compose build` from the real
//! Dockerfile (with the CA certificates a TLS-inspecting proxy needs).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use super::images::LABEL;
use super::{Run, output_to, print_tail, stdout_of};

/// Step 4: `docker compose build` of the real Dockerfile; the image runs as
/// the non-root user.
pub(super) fn build_project(run: &mut Run) -> anyhow::Result<()> {
    // Containers reach crates.io through the same network as this machine.
    // Where that network inspects TLS, this machine trusts the proxy's CA
    // beyond Debian's bundle; the build gets those certificates (and only those).
    let extra = extra_ca_certificates();
    if !extra.is_empty() {
        run.log(&format!(
            "this machine trusts {} CA certificate(s) beyond Debian's bundle (a TLS-inspecting proxy); the build trusts them too",
            extra.len()
        ));
        run.set_env("SHIPPY_BUILD_EXTRA_CA_CERTS", extra.join("\n"));
    }
    super::interrupted()?;
    let started = Instant::now();
    let log = run.logs.join("build.log");
    if !output_to(
        &mut run.compose(&["build", "vessel-service"]),
        &log,
        None,
        None,
    )? {
        print_tail(&log, 40);
        bail!("docker compose build (log: {})", log.display());
    }
    run.ok(&format!(
        "shippy-rs:dev built in {}s",
        started.elapsed().as_secs()
    ));
    // Each rebuild leaves the previous image and its layers behind; on a
    // machine that runs this often they fill the disk (14 GB was seen). Keep
    // the images in use and a bounded build cache.
    let _ = stdout_of(run.docker(&[
        "image",
        "prune",
        "-f",
        "--filter",
        &format!("label!={LABEL}"),
    ]));
    let keep = std::env::var("SHIPPY_BUILD_CACHE_KEEP").unwrap_or_else(|_| "8GB".into());
    if stdout_of(run.docker(&["builder", "prune", "-f", "--keep-storage", &keep])).is_none() {
        run.log("docker builder prune failed (the build cache stays as it is)");
    }
    let mut du = std::process::Command::new("du");
    du.arg("-sh").arg(run.cache.join("engine/data"));
    let size = stdout_of(du).unwrap_or_default();
    run.log(&format!(
        "the engine's data root now takes {}",
        size.split('\t').next().unwrap_or_default()
    ));
    let user = stdout_of(run.docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.User}}",
        "shippy-rs:dev",
    ]));
    if user.as_deref() != Some("shippy") {
        bail!("the image does not run as the non-root user");
    }
    run.ok("the image runs as user shippy");
    Ok(())
}

/// The PEM certificates this machine trusts that Debian's bundle lacks.
fn extra_ca_certificates() -> Vec<String> {
    let bundle = std::env::var_os("SSL_CERT_FILE").map_or_else(
        || PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        PathBuf::from,
    );
    let host = pem_blocks(&std::fs::read_to_string(bundle).unwrap_or_default());
    let mut debian = std::collections::HashSet::new();
    let mut dirs = vec![PathBuf::from("/usr/share/ca-certificates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "crt") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                debian.extend(pem_blocks(&text).iter().map(|block| squeeze(block)));
            }
        }
    }
    host.into_iter()
        .filter(|block| !debian.contains(&squeeze(block)))
        .collect()
}

fn pem_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else {
            break;
        };
        let end = start + length + END.len();
        blocks.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    blocks
}

fn squeeze(block: &str) -> String {
    block.split_whitespace().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_found_whole() {
        let text = "x\n-----BEGIN CERTIFICATE-----\nAB\nCD\n-----END CERTIFICATE-----\ny\n-----BEGIN CERTIFICATE-----\nEF\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            squeeze(&blocks[0]),
            "-----BEGINCERTIFICATE-----ABCD-----ENDCERTIFICATE-----"
        );
    }
}
