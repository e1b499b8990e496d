//! `api-gateway healthcheck [ADDR]`: GETs the running gateway's `/healthz`
//! and exits 0 on 200, 1 otherwise, so a container's healthcheck needs no
//! HTTP tool in the image. The address is `ADDR`, else `LISTEN_ADDR`; an
//! unspecified IP is asked on loopback.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TIMEOUT: Duration = Duration::from_secs(3);

/// When the first argument is `healthcheck`, probes and exits.
pub async fn exit_if_asked() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("healthcheck") {
        return;
    }
    let address = args
        .next()
        .or_else(|| std::env::var("LISTEN_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let code = match probe_text(&address).await {
        Ok(()) => 0,
        Err(reason) => {
            eprintln!("unhealthy: {reason}");
            1
        }
    };
    std::process::exit(code);
}

async fn probe_text(text: &str) -> Result<(), String> {
    let address: SocketAddr = text
        .parse()
        .map_err(|_| format!("\"{}\" is not an IP:port address", text.escape_debug()))?;
    probe(address).await
}

/// GETs `/healthz` on `address`; `Ok` only for a 200.
pub async fn probe(address: SocketAddr) -> Result<(), String> {
    let address = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port())
        }
        _ => address,
    };
    let asked = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nhost: localhost\r\n\r\n")
            .await
            .map_err(|error| error.to_string())?;
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|error| error.to_string())?;
        if head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200" {
            Ok(())
        } else {
            Err(format!(
                "/healthz answered {}",
                String::from_utf8_lossy(&head).escape_debug()
            ))
        }
    };
    tokio::time::timeout(TIMEOUT, asked)
        .await
        .map_err(|_| format!("{address} did not answer in {TIMEOUT:?}"))?
}
