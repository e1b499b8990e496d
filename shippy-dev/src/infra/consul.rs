//! A throwaway Consul agent (-dev), ACLs on with default deny. Consul 1.8.7
//! exists only in Debian's bullseye suite: its package is downloaded from
//! that suite and only its binary kept, in the cache.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::State;
use crate::process::{is_executable, spare_ports, start_detached, stop_pid_file, which};

pub(crate) fn start(state: &State) -> anyhow::Result<()> {
    // Tests that stop and restart Consul run agents of their own with this binary.
    let consul = binary(state)?;
    state.export("TEST_CONSUL_BIN", &consul.to_string_lossy())?;
    if let Some(address) = super::given("TEST_CONSUL_HTTP_ADDR") {
        state.log("Consul: reusing TEST_CONSUL_HTTP_ADDR");
        state.export("TEST_CONSUL_HTTP_ADDR", &address)?;
        if let Some(token) = super::given("TEST_CONSUL_MANAGEMENT_TOKEN") {
            state.export("TEST_CONSUL_MANAGEMENT_TOKEN", &token)?;
        }
        return Ok(());
    }
    let [http, dns, serf_lan, serf_wan, server] = spare_ports()?;
    // ACLs on, default deny: nothing registers or reads without a token. The
    // services' tokens are made with this management token (Consul 1.8 calls
    // it `master`; the agent uses it for itself too).
    let management = uuid::Uuid::new_v4().to_string();
    let acl = state.path("consul-acl.hcl");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&acl)
        .and_then(|mut file| {
            write!(
                file,
                "acl {{\n  enabled = true\n  default_policy = \"deny\"\n  \
                 enable_token_persistence = true\n  tokens {{\n    master = \"{management}\"\n    \
                 agent = \"{management}\"\n  }}\n}}\n"
            )
        })
        .with_context(|| format!("cannot write {}", acl.display()))?;
    let mut agent = Command::new(&consul);
    agent
        .args(["agent", "-dev", "-node", "shippy-dev", "-bind", "127.0.0.1"])
        .args(["-client", "127.0.0.1", "-grpc-port", "-1"])
        .args([
            "-http-port",
            &http.to_string(),
            "-dns-port",
            &dns.to_string(),
        ])
        .args(["-serf-lan-port", &serf_lan.to_string()])
        .args(["-serf-wan-port", &serf_wan.to_string()])
        .args(["-server-port", &server.to_string()])
        .arg("-config-file")
        .arg(&acl)
        .arg("-pid-file")
        .arg(state.path("consul.pid"));
    let log = state.path("consul.log");
    start_detached(agent, &log, "consul", http, 30)?;
    // The HTTP port opens before the dev server has elected itself leader.
    if !(0..300).any(|_| {
        let elected = has_leader(http);
        if !elected {
            std::thread::sleep(Duration::from_millis(100));
        }
        elected
    }) {
        bail!(
            "consul elected no leader within 30s (see {})",
            log.display()
        );
    }
    state.log(format_args!(
        "Consul agent (ACLs on, default deny) listening on 127.0.0.1:{http} \
         (UI http://127.0.0.1:{http}/ui, log: {})",
        log.display()
    ));
    state.export("TEST_CONSUL_HTTP_ADDR", &format!("127.0.0.1:{http}"))?;
    state.export("TEST_CONSUL_MANAGEMENT_TOKEN", &management)
}

pub(crate) fn stop(state: &State) {
    stop_pid_file(&state.path("consul.pid"));
    state.log("consul stopped");
}

/// `consul` on the PATH, else 1.8.7 from the cache (fetched on first use).
fn binary(state: &State) -> anyhow::Result<PathBuf> {
    if let Some(consul) = which("consul") {
        return Ok(consul);
    }
    let consul = crate::provision::cache_dir().join("consul-1.8.7/consul");
    if !is_executable(&consul) {
        install_from_bullseye(state, &consul)?;
    }
    Ok(consul)
}

/// Debian's bullseye suite carries consul 1.8.7; later suites carry none.
fn install_from_bullseye(state: &State, target: &Path) -> anyhow::Result<()> {
    let work =
        std::env::temp_dir().join(format!("shippy-consul.{}", uuid::Uuid::new_v4().simple()));
    state.log("fetching consul 1.8.7 from Debian bullseye");
    let installed =
        crate::provision::from_suite("bullseye", &work, &["consul"]).and_then(|unpacked| {
            let dir = target.parent().context("the cache path has no parent")?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Copied beside, then renamed: a half-written binary is never used.
            let partial = target.with_extension("partial");
            std::fs::copy(unpacked.join("usr/bin/consul"), &partial)
                .context("the consul package holds no usr/bin/consul")?;
            std::fs::set_permissions(
                &partial,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )?;
            std::fs::rename(&partial, target)
                .with_context(|| format!("cannot install {}", target.display()))
        });
    let _ = std::fs::remove_dir_all(&work);
    installed?;
    state.log(format_args!("consul installed at {}", target.display()));
    Ok(())
}

/// Whether the agent on loopback `port` names a leader.
fn has_leader(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let request = "GET /v1/status/leader HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let mut response = String::new();
    if stream.write_all(request.as_bytes()).is_err()
        || stream.read_to_string(&mut response).is_err()
    {
        return false;
    }
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return false;
    };
    head.split_whitespace().nth(1) == Some("200") && !body.trim_matches(['"', '\n']).is_empty()
}
