use std::net::SocketAddr;
use std::time::Duration;

use super::{ExternalServer, Readiness};

fn spare_address() -> SocketAddr {
    let [port] = crate::net::spare_ports();
    ([127, 0, 0, 1], port).into()
}

/// A program that says so on stdout, then listens on `address` until killed.
fn listener(address: SocketAddr) -> ExternalServer {
    let script = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         print('listening on', {port}, flush=True)\n\
         s.listen()\n\
         time.sleep(600)\n",
        port = address.port()
    );
    ExternalServer::new("listener", "/usr/bin/python3", address).args(["-c", &script])
}

/// What a panicking `start` said (the directory it kept is removed here).
async fn start_failure(server: ExternalServer) -> String {
    let dir = server.dir().to_owned();
    let panic = tokio::spawn(server.start())
        .await
        .expect_err("the start fails")
        .into_panic();
    let _ = std::fs::remove_dir_all(dir);
    panic.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[tokio::test]
async fn its_output_goes_to_its_log_across_restarts_and_everything_goes_when_dropped() {
    let address = spare_address();
    let mut server = listener(address).start().await;
    assert_eq!(server.address(), address);
    tokio::net::TcpStream::connect(address)
        .await
        .expect("it listens once started");
    let log = std::fs::read_to_string(server.log_path()).expect("a log");
    assert!(
        log.contains(&format!("listening on {}", address.port())),
        "log: {log:?}"
    );

    server.stop();
    assert_eq!(server.pid(), None);
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "stopped, it no longer listens"
    );
    server.restart().await;
    let log = std::fs::read_to_string(server.log_path()).expect("a log");
    assert_eq!(log.matches("listening on").count(), 2, "log: {log:?}");

    let pid = server.pid().expect("it runs");
    let dir = server.dir().to_owned();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "dropped, its process is killed and reaped"
    );
    assert!(!dir.exists(), "dropped, its directory is removed");
}

#[tokio::test]
async fn a_program_that_exits_before_it_is_ready_fails_at_once_with_the_end_of_its_log() {
    let server = ExternalServer::new("broken", "sh", spare_address())
        .args(["-c", "echo 'no such setting: --colour' >&2; exit 3"]);
    let message = start_failure(server).await;
    assert!(
        message.contains("broken exited with exit status: 3 before it was ready"),
        "{message}"
    );
    assert!(message.contains("no such setting: --colour"), "{message}");
}

#[tokio::test]
async fn a_program_that_is_not_ready_in_time_fails_saying_what_it_waited_for() {
    let address = spare_address();
    let server = ExternalServer::new("silent", "sleep", address)
        .arg("600")
        .ready_when(Readiness::listening().within(Duration::from_millis(300)));
    let message = start_failure(server).await;
    assert!(
        message.contains(&format!(
            "silent was not listening on {address} within 300ms"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_program_that_cannot_be_started_says_where_it_comes_from() {
    let server = ExternalServer::new("missing", "/nonexistent/shippy-server", spare_address())
        .install_hint("cargo dev infra up installs it");
    let message = start_failure(server).await;
    assert!(message.contains("start missing"), "{message}");
    assert!(
        message.contains("cargo dev infra up installs it"),
        "{message}"
    );
}
