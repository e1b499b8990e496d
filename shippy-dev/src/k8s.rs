//! `cargo dev k8s check|dev-key|kubectl`: the Kubernetes manifests
//! (deploy/kubernetes) without a cluster (was scripts/k8s.sh).
//!
//! kubectl comes from Debian trixie's kubernetes-client (its binary is in
//! the `kubectl` package of the same source): bookworm carries none, and the
//! `kubectl` that may be on PATH is whatever else installed it. The package
//! is downloaded from that suite of this machine's own Debian mirror
//! ([`crate::provision::from_suite`]) and only its binary kept, in the cache.
//! kubernetes-validate (the Kubernetes OpenAPI schemas as JSON schemas) comes
//! from PyPI, installed with pip when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::provision::cache_dir;
use crate::repo;
use crate::smoke::python;

const USAGE: &str = "\
cargo dev k8s check [BIN_DIR]    render both overlays and check them against
                                 the Kubernetes schemas and the binaries in
                                 BIN_DIR (default target/debug); one
                                 \"ok - ...\" / \"not ok - ...\" line per check
cargo dev k8s dev-key [--force]  write the dev overlay's JWT signing key
                                 (an Ed25519 PKCS#8 PEM, gitignored) if missing
cargo dev k8s kubectl            print the path of the kubectl used here";

/// What kubernetes-validate needs, from PyPI.
const VALIDATE: [&str; 2] = ["kubernetes-validate>=1.32", "PyYAML"];

/// Runs it.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["check"] => check(None),
        ["check", bin_dir] => check(Some(Path::new(bin_dir))),
        ["dev-key"] => dev_key(false),
        ["dev-key", "--force"] => dev_key(true),
        ["kubectl"] => {
            println!("{}", kubectl()?.display());
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Renders both overlays and checks them (scripts/check_kubernetes.py); a
/// failure to set up is a failed check too, counted by make test.
fn check(bin_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bin_dir = bin_dir.map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo().join("target"), PathBuf::from)
                .join("debug")
        },
        Path::to_path_buf,
    );
    let ready = kubectl().and_then(|kubectl| Ok((kubectl, kubernetes_validate()?)));
    let (kubectl, python) = match ready {
        Ok(ready) => ready,
        Err(error) => {
            eprintln!("k8s: error: {error:#}");
            println!("not ok - kubernetes: {error:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let status = Command::new(&python)
        .arg(repo().join("scripts/check_kubernetes.py"))
        .arg("--kubectl")
        .arg(&kubectl)
        .arg(&bin_dir)
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}

/// The cached kubectl from Debian trixie, fetched first if missing.
fn kubectl() -> anyhow::Result<PathBuf> {
    let target = cache_dir().join("kubernetes-client-trixie/kubectl");
    if target.is_file() {
        return Ok(target);
    }
    eprintln!("k8s: fetching kubectl (kubernetes-client) from Debian trixie");
    let work = std::env::temp_dir().join(format!("shippy-kubectl-{}", std::process::id()));
    let fetched = install_kubectl(&work, &target);
    let _ = std::fs::remove_dir_all(&work);
    fetched?;
    let version = Command::new(&target)
        .args(["version", "--client"])
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    eprintln!("k8s: kubectl {version} installed at {}", target.display());
    Ok(target)
}

/// kubectl is in trixie's `kubectl` package, which `kubernetes-client` depends on.
fn install_kubectl(work: &Path, target: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let unpacked = crate::provision::from_suite("trixie", work, &["kubernetes-client", "kubectl"])?;
    let dir = target.parent().context("the cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Copied beside, then renamed: never a half-written kubectl in the cache.
    let partial = target.with_extension("partial");
    std::fs::copy(unpacked.join("usr/bin/kubectl"), &partial)
        .context("the kubectl package holds no usr/bin/kubectl")?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, target)?;
    Ok(())
}

/// An interpreter that has kubernetes-validate: python3 itself, installing
/// it with pip if missing, or (where pip may not install into it, as
/// Debian's own python3) a virtualenv in the cache.
fn kubernetes_validate() -> anyhow::Result<PathBuf> {
    let modules = "kubernetes_validate, yaml";
    let system = PathBuf::from("python3");
    let venv = cache_dir().join("k8s-venv");
    let in_venv = venv.join("bin/python");
    if python::imports(&system, modules) {
        return Ok(system);
    }
    if python::imports(&in_venv, modules) {
        return Ok(in_venv);
    }
    eprintln!("k8s: installing kubernetes-validate from PyPI");
    if python::pip_install(&system, &VALIDATE, true) {
        return Ok(system);
    }
    eprintln!(
        "k8s: pip cannot install into python3; using a virtualenv in {}",
        venv.display()
    );
    python::make_venv(&venv)?;
    if !python::pip_install(&in_venv, &VALIDATE, false) {
        bail!("pip could not install kubernetes-validate");
    }
    Ok(in_venv)
}

/// Writes the dev overlay's JWT signing key (an Ed25519 PKCS#8 PEM, as
/// `openssl genpkey -algorithm ed25519` writes it), unless it exists and
/// not `force`.
fn dev_key(force: bool) -> anyhow::Result<ExitCode> {
    let path = repo().join("deploy/kubernetes/overlays/dev/jwt-signing-key.pem");
    if path.is_file() && !force {
        eprintln!(
            "k8s: {} exists (--force replaces it: tokens it signed stop verifying)",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let pem = new_key_pem()?;
    let partial = path.with_extension("pem.tmp");
    write_private(&partial, pem.as_bytes())?;
    std::fs::rename(&partial, &path)
        .with_context(|| format!("cannot move the key to {}", path.display()))?;
    eprintln!(
        "k8s: wrote {} (gitignored); the dev overlay's secretGenerator reads it",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A fresh Ed25519 private key as PKCS#8 v1 PEM (no public key inside:
/// what OpenSSL writes).
fn new_key_pem() -> anyhow::Result<String> {
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes, spki::der::pem::LineEnding};
    use rand::TryRngCore as _;
    let mut secret_key = [0; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut secret_key)
        .map_err(|error| anyhow::anyhow!("no randomness from the operating system: {error}"))?;
    let pem = KeypairBytes {
        secret_key,
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|error| anyhow::anyhow!("cannot encode the key as PKCS#8: {error}"))?;
    Ok(pem.to_string())
}

/// Writes `bytes` to a new file at `path` only its owner can read (mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_key_is_an_ed25519_pkcs8_v1_pem_as_openssl_writes_it() {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let pem = new_key_pem().unwrap_or_default();
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN PRIVATE KEY-----"));
        assert_eq!(lines.last(), Some(&"-----END PRIVATE KEY-----"));
        // 48 bytes of DER: version 0, the Ed25519 OID, the 32-byte key.
        assert_eq!(lines.len(), 3);
        assert!(
            lines
                .get(1)
                .is_some_and(|line| line.starts_with("MC4CAQAwBQYDK2VwBCIEI"))
        );
        assert!(ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).is_ok());
        assert_ne!(new_key_pem().unwrap_or_default(), pem, "each key is fresh");
    }
}
