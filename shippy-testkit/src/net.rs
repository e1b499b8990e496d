//! Loopback plumbing: a [`LateProxy`] that lets a dependency appear late, a
//! [`ClosedPort`] that refuses connections, URL ↔ socket address helpers and
//! a plain HTTP GET for probes.

use shippy_service::settings::SecretUrl;

/// A loopback port that refuses connections for as long as this lives (or
/// until [`ClosedPort::listen`]): bound but not listening, so nothing else
/// can take it meanwhile (a port that is merely probed and dropped could be
/// handed to another test).
#[derive(Debug)]
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
    /// The port, on 127.0.0.1.
    pub address: std::net::SocketAddr,
}

impl ClosedPort {
    /// Binds one.
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
        let address = socket.local_addr().expect("local address");
        Self { socket, address }
    }

    /// Holds `address`, the port of a server that just stopped, so that
    /// nothing else takes it while a test still points there: connections
    /// to it are refused, as to a server that is down.
    pub fn at(address: std::net::SocketAddr) -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        // Its connections may still wait out TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        Ok(Self { socket, address })
    }

    /// Starts listening on it: from now on, connections are accepted.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket
            .listen(1024)
            .expect("listen on the reserved port")
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A TCP proxy on loopback that forwards to `upstream` once started: stands
/// in for a dependency that comes up late or goes away, while the real
/// server behind it does the work.
#[derive(Debug)]
pub struct LateProxy {
    address: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    /// Until started, connections to the port are refused, as to a server
    /// that is not up yet.
    closed: Option<ClosedPort>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LateProxy {
    /// Reserves a loopback port to forward to `upstream`, without listening
    /// yet (the port stays bound, so nothing else can take it meanwhile).
    pub fn reserve(upstream: std::net::SocketAddr) -> Self {
        let closed = ClosedPort::new();
        Self {
            address: closed.address,
            upstream,
            closed: Some(closed),
            task: None,
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Starts listening and forwarding.
    pub async fn start(&mut self) {
        let listener = match self.closed.take() {
            Some(closed) => closed.listen(),
            None => tokio::net::TcpListener::bind(self.address)
                .await
                .expect("bind the proxy port again"),
        };
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }
}

impl Drop for LateProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The loopback address and port a URL such as
/// `postgres://user@127.0.0.1:5432/db` points at.
pub fn socket_addr_of(url: &SecretUrl) -> std::net::SocketAddr {
    let url = url::Url::parse(url.expose()).expect("valid URL");
    let host = url.host_str().expect("URL has a host");
    let port = url.port().expect("URL has a port");
    format!("{host}:{port}")
        .parse()
        .expect("host is an IP address")
}

/// The same URL pointing at `address` instead.
pub fn with_socket_addr(url: &SecretUrl, address: std::net::SocketAddr) -> SecretUrl {
    let mut url = url::Url::parse(url.expose()).expect("valid URL");
    url.set_ip_host(address.ip()).expect("URL can have a host");
    url.set_port(Some(address.port()))
        .expect("URL can have a port");
    url.as_str().parse().expect("still a valid URL")
}

/// A plain HTTP/1.0 GET on loopback, for test probes.
pub async fn http_get(url: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// `N` distinct loopback ports free a moment ago, for a program that binds
/// its own (bound together, then let go: another process could still take
/// one before the program does, so use it at once).
pub fn spare_ports<const N: usize>() -> [u16; N] {
    try_spare_ports().expect("bind loopback ports")
}

/// [`spare_ports`], or why no loopback port could be bound (what shippy-dev
/// reports instead of panicking).
pub fn try_spare_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let mut ports = [0; N];
    let mut probes = Vec::with_capacity(N);
    for port in &mut ports {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        *port = probe.local_addr()?.port();
        probes.push(probe);
    }
    Ok(ports)
}
