//! Waiting for what was started: a gRPC server's health SERVING, the
//! api-gateway's `/readyz`, a service passing in Consul, a port listening.
//! A process that exits meanwhile fails the wait at once, saying why.

use std::time::Duration;

use anyhow::bail;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::http;
use super::processes::Processes;

/// How often a probe is tried.
const EVERY: Duration = Duration::from_millis(100);
/// How long a service may take to start.
const START_WITHIN: Duration = Duration::from_secs(30);

/// Fails when `name` exited: the end of its log on stderr, and what of it
/// says its address was taken.
fn check_running(processes: &mut Processes, name: &str) -> anyhow::Result<()> {
    let Some(status) = processes.exited(name) else {
        return Ok(());
    };
    eprintln!("{}", processes.log_tail(name, 5));
    let log = std::fs::read_to_string(processes.log_path(name)).unwrap_or_default();
    let taken = log
        .lines()
        .find(|line| line.contains("in use"))
        .map(|line| format!(" ({})", line.trim().chars().take(200).collect::<String>()))
        .unwrap_or_default();
    bail!(
        "{name} exited during start ({status}){taken} (log: {})",
        processes.log_path(name).display()
    )
}

/// Whether the gRPC server at `channel` answers SERVING.
async fn serving(channel: tonic::transport::Channel) -> bool {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

/// Waits until `name` (listening on 127.0.0.1:`port`) is SERVING.
pub(crate) async fn wait_serving(
    processes: &mut Processes,
    name: &str,
    port: u16,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    let deadline = tokio::time::Instant::now() + START_WITHIN;
    while tokio::time::Instant::now() < deadline {
        if serving(channel.clone()).await {
            println!("    {name} is SERVING on 127.0.0.1:{port}");
            return Ok(());
        }
        check_running(processes, name)?;
        tokio::time::sleep(EVERY).await;
    }
    eprintln!("{}", processes.log_tail(name, 20));
    bail!(
        "{name} did not become healthy within 30 s (log: {})",
        processes.log_path(name).display()
    )
}

/// Waits until `name`'s `http://127.0.0.1:PORT/readyz` answers 200.
pub(crate) async fn wait_ready(
    processes: &mut Processes,
    name: &str,
    port: u16,
) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + START_WITHIN;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match http::get(&url, &[]).await {
            Ok(answer) if answer.status == 200 => {
                println!("    {name} is ready on http://127.0.0.1:{port}/");
                return Ok(());
            }
            Ok(answer) => last = answer.body,
            Err(error) => last = format!("{error:#}"),
        }
        check_running(processes, name)?;
        tokio::time::sleep(EVERY).await;
    }
    bail!(
        "{name} did not become ready within 30 s: {} (log: {})",
        last.trim(),
        processes.log_path(name).display()
    )
}

/// Waits until each of `names` is registered and passing in the Consul
/// agent at `consul` (asked with `token`).
pub(crate) async fn wait_registered(
    consul: &str,
    token: &str,
    names: &[&str],
) -> anyhow::Result<()> {
    for name in names {
        let url = format!("http://{consul}/v1/health/service/{name}?passing=true");
        let mut passing = false;
        for _ in 0..100 {
            passing = http::get(&url, &[("x-consul-token", token)])
                .await
                .is_ok_and(|answer| answer.status == 200 && answer.body.contains("\"ServiceID\""));
            if passing {
                break;
            }
            tokio::time::sleep(EVERY).await;
        }
        if !passing {
            bail!("{name} is not passing in Consul");
        }
        println!("    {name} is registered and passing in Consul");
    }
    Ok(())
}

/// Waits (up to `within`) until 127.0.0.1:`port` accepts connections;
/// whether it did.
pub(crate) async fn wait_listening(port: u16, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(EVERY).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::processes::Processes;

    fn run_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("shippy-dev-probe-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        dir
    }

    #[tokio::test]
    async fn a_service_that_exits_during_start_fails_at_once_saying_its_port_was_taken() {
        let run = run_dir();
        let mut processes = Processes::new(&run);
        let mut command = tokio::process::Command::new("sh");
        command.args([
            "-c",
            "echo 'error: cannot listen on 127.0.0.1:1: Address already in use'; exit 3",
        ]);
        processes.start("user-service", command).unwrap_or_default();
        let started = tokio::time::Instant::now();
        let [port] = shippy_testkit::spare_ports();
        let error = super::wait_serving(&mut processes, "user-service", port)
            .await
            .err()
            .map(|error| format!("{error:#}"))
            .unwrap_or_default();
        assert!(
            error.contains("user-service exited during start")
                && error.contains("Address already in use"),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(run);
    }
}
