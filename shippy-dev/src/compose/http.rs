//! A plain HTTP/1.0 client for the published ports on loopback (Consul, the
//! api-gateway, the mail and tracing containers): status and body.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// One answer: the status code and the body.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: String,
}

/// `method` on `url` (`http://host:port/path`) with `headers` and `body`.
pub(super) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream =
        TcpStream::connect(authority).with_context(|| format!("cannot connect to {authority}"))?;
    let limit = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(limit)
        .context("cannot set a timeout")?;
    stream
        .set_write_timeout(limit)
        .context("cannot set a timeout")?;
    let mut head = format!("{method} /{path} HTTP/1.0\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    stream
        .write_all(head.as_bytes())
        .with_context(|| format!("cannot send {method} {url}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("no answer to {method} {url}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        bail!("{method} {url}: an answer without headers");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{method} {url}: no status in {:?}", head.lines().next()))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// GET `url`'s body, failing unless the status is 2xx.
pub(super) fn get_ok(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<String> {
    let response = request("GET", url, headers, None)?;
    if !(200..300).contains(&response.status) {
        bail!("GET {url} answered {}", response.status);
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_headers_and_body_arrive() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0; 1024];
            let read = stream.read(&mut request).unwrap();
            let request = String::from_utf8_lossy(&request[..read]).into_owned();
            stream
                .write_all(b"HTTP/1.0 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno")
                .unwrap();
            request
        });
        let response = request(
            "PUT",
            &format!("http://{address}/v1/x?y=1"),
            &[("X-Token", "t")],
            Some("{}"),
        )
        .unwrap();
        assert_eq!(response.status, 403);
        assert_eq!(response.body, "no");
        let request = server.join().unwrap();
        assert!(
            request.starts_with("PUT /v1/x?y=1 HTTP/1.0\r\n"),
            "{request}"
        );
        assert!(request.contains("X-Token: t\r\n"), "{request}");
        assert!(
            request.ends_with("Content-Length: 2\r\n\r\n{}"),
            "{request}"
        );
    }
}
