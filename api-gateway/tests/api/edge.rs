//! The HTTP edge against slow and greedy clients (the probe's slowloris
//! runs): header, body and idle timeouts, and the connection cap. The
//! gateway runs alone: `/healthz` and the body-reading routes answer (or
//! time out) before any service is asked.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use api_gateway::{
    app::Application,
    settings::{HttpLimits, Settings},
};
use shippy_service::Shutdown;
use shippy_testkit::assert_mentions;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Slack for a busy 2-core machine on top of each timeout.
const SLACK: Duration = Duration::from_millis(1500);

/// A gateway whose services are nowhere (their channels are lazy).
struct Edge {
    address: SocketAddr,
    metrics: SocketAddr,
    shutdown: Shutdown,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Edge {
    /// A gateway with [`long`] limits but for what `shorten` changes.
    async fn start(shorten: impl FnOnce(&mut HttpLimits)) -> Self {
        shippy_testkit::init_test_logging();
        let mut http = long();
        shorten(&mut http);
        let nowhere = "http://127.0.0.1:9".to_owned();
        let settings = Settings {
            http,
            forwarding: Default::default(),
            ..crate::settings_for(nowhere.clone(), nowhere.clone(), nowhere)
        };
        let app = Application::build(&settings).await.unwrap();
        let address = app.local_addr().unwrap();
        let metrics = app.metrics_addr().unwrap();
        let shutdown = Shutdown::new();
        let running = Some(tokio::spawn(app.run(shutdown.clone())));
        Self {
            address,
            metrics,
            shutdown,
            running,
        }
    }

    /// `GET /healthz` on a fresh connection: the status, 0 if none came.
    async fn health(&self) -> u16 {
        let asked = crate::raw_request(self.address, "GET", "/healthz", &[]);
        match tokio::time::timeout(Duration::from_secs(5), asked).await {
            Ok((status, _)) => status,
            Err(_) => 0,
        }
    }

    /// A connection kept alive after answering `GET /healthz`.
    async fn kept_alive(&self) -> TcpStream {
        let mut kept = TcpStream::connect(self.address).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("{\"status\":\"ok\"}") {
            let n = kept.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buffer[..n]);
        }
        kept
    }

    /// Connections closed (or requests answered 408) at the `timeout`
    /// (`header`, `body` or `idle`) so far.
    async fn timeouts(&self, timeout: &str) -> Option<f64> {
        let name = format!("http_server_timeouts_total{{timeout=\"{timeout}\"}}");
        self.metric(&name).await
    }

    /// The value of an unlabelled metric.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = crate::raw_request(self.metrics, "GET", "/metrics", &[]).await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Limits no test reaches, but for the one it shortens.
fn long() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(10).into(),
        body_read_timeout: Duration::from_secs(10).into(),
        idle_timeout: Duration::from_secs(30).into(),
        max_connections: 512,
    }
}

/// Reads until the peer closes (or resets) the connection, at most `limit`:
/// everything read, and whether it closed in time.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut text = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => text.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read).await.is_ok();
    (String::from_utf8_lossy(&text).into_owned(), closed)
}

/// Sends a request head one byte every 100 ms, never finishing it; how
/// long until the gateway closed the connection, `None` if it did not
/// within `limit`.
async fn trickle_headers(address: SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(address).await.ok()?;
    let (mut reader, mut writer) = stream.into_split();
    let head = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: ";
    let mut bytes = head.iter().copied().chain(std::iter::repeat(b'a'));
    let mut buffer = [0u8; 512];
    let closed = async {
        loop {
            tokio::select! {
                read = reader.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let byte = bytes.next().unwrap_or(b'a');
                    if writer.write_all(&[byte]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(limit, closed).await.ok()?;
    Some(started.elapsed())
}

#[tokio::test]
async fn connections_trickling_their_headers_or_silent_are_closed_at_the_header_timeout() {
    let header = Duration::from_secs(1);
    let edge = Edge::start(|limits| limits.header_read_timeout = header.into()).await;
    let tricklers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(trickle_headers(edge.address, header + SLACK * 3)))
        .collect();
    // And one that never sends a byte: its first head is due all the same.
    let mut silent = TcpStream::connect(edge.address).await.unwrap();
    let opened = Instant::now();
    // Meanwhile, a normal request is answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    assert_eq!(edge.health().await, 200);
    assert!(asked.elapsed() < header, "answered at once");

    let mut closed_after = Vec::new();
    for trickler in tricklers {
        closed_after.push(trickler.await.unwrap());
    }
    let still_open = closed_after.iter().filter(|after| after.is_none()).count();
    assert_eq!(still_open, 0, "of 200 trickling connections");
    let slowest = closed_after.iter().flatten().max().copied().unwrap();
    assert!(slowest <= header + SLACK, "closed after {slowest:?}");
    let (_, closed) = read_until_closed(&mut silent, header + SLACK).await;
    assert!(closed, "silent connection still open");
    assert!(opened.elapsed() <= header + SLACK, "{:?}", opened.elapsed());
    assert_eq!(edge.health().await, 200);
    assert_eq!(edge.timeouts("header").await, Some(201.0));
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() {
    let body = Duration::from_secs(1);
    let edge = Edge::start(|limits| limits.body_read_timeout = body.into()).await;
    let mut stream = TcpStream::connect(edge.address).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(
            b"POST /api/v1/login HTTP/1.1\r\nhost: localhost\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"email\": ",
        )
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, body + SLACK * 3).await;
    assert!(closed, "still open after {:?}: {answer}", started.elapsed());
    assert!(started.elapsed() <= body + SLACK, "{:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_mentions(
        &answer,
        &[
            "\"code\":\"DEADLINE_EXCEEDED\"",
            "within 1s",
            "x-content-type-options: nosniff",
        ],
    );
    assert_eq!(edge.timeouts("body").await, Some(1.0));
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let edge = Edge::start(|limits| limits.idle_timeout = idle.into()).await;
    // Kept alive after an answer.
    let mut kept = edge.kept_alive().await;
    let answered = Instant::now();

    let (_, closed) = read_until_closed(&mut kept, idle + SLACK * 3).await;
    assert!(closed, "kept-alive connection still open");
    let after = answered.elapsed();
    assert!(
        after >= idle - Duration::from_millis(100) && after <= idle + SLACK,
        "kept-alive connection closed after {after:?}"
    );
    assert_eq!(edge.timeouts("idle").await, Some(1.0));
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_count_goes_down() {
    let cap = 20;
    let edge = Edge::start(|limits| limits.max_connections = cap).await;
    // 40 connections that send nothing, held open by the client.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(TcpStream::connect(edge.address).await.unwrap());
    }
    let mut refused = 0;
    for stream in &mut held {
        let (answer, closed) = read_until_closed(stream, Duration::from_millis(300)).await;
        if closed {
            refused += 1;
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        }
    }
    assert_eq!(refused, 40 - cap, "connections closed at once");
    assert_eq!(
        edge.metric("http_server_connections_open").await,
        Some(f64::from(cap))
    );
    // At the cap, one more is refused too.
    assert_eq!(edge.health().await, 503);

    drop(held);
    let mut open = None;
    for _ in 0..50 {
        open = edge.metric("http_server_connections_open").await;
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open,
        Some(0.0),
        "every closed connection gave its slot back"
    );
    assert_eq!(edge.health().await, 200);
    assert_eq!(
        edge.metric("http_server_connections_refused_total").await,
        Some(f64::from(40 - cap + 1))
    );
}

#[tokio::test]
async fn a_stop_is_not_held_up_by_slow_or_silent_clients() {
    let header = Duration::from_secs(1);
    let mut edge = Edge::start(|limits| limits.header_read_timeout = header.into()).await;
    // Kept alive after an answer, half a head, and nothing at all.
    let _kept = edge.kept_alive().await;
    let mut half = TcpStream::connect(edge.address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let _silent = TcpStream::connect(edge.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = Instant::now();
    edge.shutdown.trigger();
    let running = edge.running.take().unwrap();
    let stopped = tokio::time::timeout(header + SLACK * 3, running).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "not stopped after {:?}: {stopped:?}",
        stopping.elapsed()
    );
    assert!(
        stopping.elapsed() <= header + SLACK,
        "{:?}",
        stopping.elapsed()
    );
}
