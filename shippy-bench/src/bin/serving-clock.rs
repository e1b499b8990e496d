//! A service's cold start, for `make bench`: started by `cargo dev bench`
//! beside a service it has just spawned, it polls the service every few
//! milliseconds until its first SERVING health answer (`--grpc`) or its first
//! `200` from `/readyz` (`--readyz`, the api-gateway), and prints the
//! milliseconds since the spawn (`--since`, seconds since the epoch taken
//! just before it) to that, and to when the service first accepted a
//! connection: `SERVING_MS LISTENING_MS`. The gap is the service waiting on
//! what it depends on (its database, the services it calls). `bench
//! --started NAME=SERVING_MS --listening NAME=LISTENING_MS` reports them.

use std::{
    net::SocketAddr,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[derive(Debug, Parser)]
struct Args {
    /// When the service was spawned: seconds since the Unix epoch, with a
    /// fraction (taken just before the spawn).
    #[arg(long, value_parser = parse_since)]
    since: SystemTime,
    /// A gRPC server: wait for its health service's SERVING.
    #[arg(long, conflicts_with = "readyz", required_unless_present = "readyz")]
    grpc: Option<SocketAddr>,
    /// An HTTP server: wait for `GET /readyz` to answer 200.
    #[arg(long)]
    readyz: Option<SocketAddr>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_seconds: u64,
}

/// How long between two polls.
const EVERY: Duration = Duration::from_millis(5);

fn parse_since(text: &str) -> Result<SystemTime, String> {
    // $EPOCHREALTIME's decimal point is the locale's.
    let seconds = text
        .replace(',', ".")
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .ok_or_else(|| format!("`{text}` is not a time in seconds since the Unix epoch"))?;
    Ok(UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

/// Where a starting server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing accepts a connection yet.
    Down,
    /// It accepts connections, but is not serving yet.
    Listening,
    Serving,
}

/// Where the gRPC server at `address` stands: SERVING by its health service.
async fn grpc_state(address: SocketAddr) -> State {
    let Ok(endpoint) = Endpoint::from_shared(format!("http://{address}")) else {
        return State::Down;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
    else {
        return State::Down;
    };
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    match answer {
        Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => State::Serving,
        _ => State::Listening,
    }
}

/// Where the HTTP server at `address` stands: serving once `GET /readyz`
/// answers 200.
async fn http_state(address: SocketAddr) -> State {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return State::Down;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    // The status line is all that is needed: `HTTP/1.1 200 OK`.
    let mut head = [0u8; 12];
    let ready = stream.write_all(request.as_bytes()).await.is_ok()
        && stream.read_exact(&mut head).await.is_ok()
        && matches!(&head, b"HTTP/1.1 200" | b"HTTP/1.0 200");
    if ready {
        State::Serving
    } else {
        State::Listening
    }
}

/// How long a server took from its spawn.
#[derive(Debug, Clone, Copy)]
struct Started {
    /// To its first accepted connection.
    listening: Duration,
    /// To its first SERVING (or ready) answer.
    serving: Duration,
}

/// Polls until the server serves; `None` after `timeout`.
async fn wait(args: &Args) -> Option<Started> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_seconds);
    let since = || {
        SystemTime::now()
            .duration_since(args.since)
            .unwrap_or_default()
    };
    let mut listening = None;
    loop {
        let state = match (args.grpc, args.readyz) {
            (Some(address), _) => grpc_state(address).await,
            (None, Some(address)) => http_state(address).await,
            (None, None) => State::Down,
        };
        if state != State::Down && listening.is_none() {
            listening = Some(since());
        }
        if state == State::Serving {
            let serving = since();
            return Some(Started {
                listening: listening.unwrap_or(serving),
                serving,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match wait(&args).await {
        Some(started) => {
            println!(
                "{:.1} {:.1}",
                started.serving.as_secs_f64() * 1000.0,
                started.listening.as_secs_f64() * 1000.0
            );
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "serving-clock: {:?} was not up within {} s",
                args.grpc.or(args.readyz),
                args.timeout_seconds
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tonic_health::ServingStatus as Status;

    fn args(grpc: Option<SocketAddr>, readyz: Option<SocketAddr>) -> Args {
        Args {
            since: SystemTime::now(),
            grpc,
            readyz,
            timeout_seconds: 20,
        }
    }

    #[test]
    fn the_spawn_time_is_read_as_bash_writes_it() {
        let since = parse_since("1765000000.250000").unwrap();
        let after_epoch = since.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(after_epoch, Duration::from_millis(1_765_000_000_250));
        assert_eq!(parse_since("1765000000,25").unwrap(), since);
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("-1").is_err());
    }

    #[tokio::test]
    async fn a_grpc_server_counts_once_serving_not_once_listening() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status("", Status::NotServing).await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let clock = tokio::spawn(async move { wait(&args(Some(address), None)).await });
        // Listening and answering NOT_SERVING for a while: not up yet.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!clock.is_finished(), "counted as up while NOT_SERVING");
        reporter.set_service_status("", Status::Serving).await;
        let started = clock.await.unwrap().expect("up once SERVING");
        assert!(
            started.serving >= Duration::from_millis(1000),
            "{started:?}"
        );
        // It was listening from the first poll, long before it served.
        assert!(
            started.listening + Duration::from_millis(500) <= started.serving,
            "{started:?}"
        );
    }

    #[tokio::test]
    async fn an_http_server_counts_once_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut clock = tokio::spawn(async move { wait(&args(None, Some(address))).await });
        // The first two asks are told 503, the third 200.
        for status in [
            "503 Service Unavailable",
            "503 Service Unavailable",
            "200 OK",
        ] {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                taken = &mut clock => panic!("counted as up before a 200: {taken:?}"),
            };
            let mut request = [0u8; 15];
            stream.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"GET /readyz HTT");
            if status.starts_with("200") {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            stream.write_all(answer.as_bytes()).await.unwrap();
        }
        let started = clock.await.unwrap().expect("up once ready");
        assert!(
            started.listening + Duration::from_millis(400) <= started.serving,
            "{started:?}"
        );
    }
}
