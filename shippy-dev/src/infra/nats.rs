//! A throwaway nats-server with JetStream (Debian's package).

use std::process::Command;

use super::State;
use crate::process::{spare_ports, start_detached, stop_pid_file};

pub(crate) fn start(state: &State) -> anyhow::Result<()> {
    if let Some(url) = super::given("TEST_NATS_URL") {
        state.log("NATS: reusing TEST_NATS_URL");
        return state.export("TEST_NATS_URL", &url);
    }
    if !crate::provision::have("nats-server") {
        crate::provision::apt(&["nats-server"])?;
    }
    let [port] = spare_ports()?;
    let store = state.path("nats");
    std::fs::create_dir_all(&store)?;
    let mut nats = Command::new("nats-server");
    nats.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&store)
        .arg("-P")
        .arg(state.path("nats.pid"));
    let log = state.path("nats.log");
    start_detached(nats, &log, "nats-server", port, 30)?;
    state.log(format_args!(
        "NATS (JetStream) listening on 127.0.0.1:{port} (log: {})",
        log.display()
    ));
    state.export("TEST_NATS_URL", &format!("nats://127.0.0.1:{port}"))
}

pub(crate) fn stop(state: &State) {
    stop_pid_file(&state.path("nats.pid"));
    state.log("nats stopped");
    let _ = std::fs::remove_dir_all(state.path("nats"));
}
