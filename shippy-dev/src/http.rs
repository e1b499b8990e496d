//! The one small HTTP/1 client of shippy-dev (hyper-util): the api-gateway's
//! `/readyz` and JSON API, Consul's HTTP API, the compose containers'
//! published ports. Async for the commands that run on tokio, [`blocking`]
//! for compose-test, which does not.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// How long one request may take in all.
const WITHIN: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

/// An answer: its status and its body as text.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    pub(crate) body: String,
}

impl Answer {
    /// 2xx (what `curl -f` takes).
    pub(crate) fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body, if the status is 2xx; otherwise an error naming `what`
    /// with the status and (an excerpt of) the body.
    pub(crate) fn ok(self, what: &str) -> anyhow::Result<String> {
        if self.is_success() {
            return Ok(self.body);
        }
        let excerpt: String = self.body.chars().take(300).collect();
        anyhow::bail!("{what} answered {}: {excerpt:?}", self.status.as_u16())
    }
}

/// `GET url` with `headers`.
pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    request("GET", url, headers, None).await
}

/// `POST url` with a JSON `body`.
pub(crate) async fn post_json(url: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
    let body = serde_json::to_string(body)?;
    request(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await
}

/// `method` on `url` with `headers` and `body`, within [`WITHIN`].
pub(crate) async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<Answer> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_WITHIN));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let method = http::Method::from_bytes(method.as_bytes())
        .with_context(|| format!("not an HTTP method: {method}"))?;
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
    let request = builder
        .body(body)
        .with_context(|| format!("not a request: {url}"))?;
    let answer = async {
        let response = client.request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(WITHIN, answer)
        .await
        .with_context(|| format!("{url} did not answer within {WITHIN:?}"))?
        .with_context(|| format!("no answer from {url}"))
}

/// [`request`] from code that does not run on tokio (not to be called from
/// async code).
pub(crate) fn blocking(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<Answer> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for an HTTP request")?
        .block_on(request(method, url, headers, body))
}

/// `GET url`'s body (blocking), failing unless the status is 2xx.
pub(crate) fn blocking_get_ok(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<String> {
    let answer = blocking("GET", url, headers, None)?;
    if !answer.is_success() {
        anyhow::bail!("GET {url} answered {}", answer.status.as_u16());
    }
    Ok(answer.body)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    #[test]
    fn method_headers_and_body_go_out_and_status_and_body_come_back() {
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
        let answer = blocking(
            "PUT",
            &format!("http://{address}/v1/x?y=1"),
            &[("X-Token", "t")],
            Some("{}"),
        )
        .unwrap();
        assert_eq!(answer.status, 403);
        assert_eq!(answer.body, "no");
        let request = server.join().unwrap().to_ascii_lowercase();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(lines[0], "put /v1/x?y=1 http/1.1", "{request}");
        for header in ["x-token: t", "content-length: 2"] {
            assert!(lines.contains(&header), "{header} not in {request}");
        }
        assert_eq!(body, "{}");
    }

    #[test]
    fn an_error_status_fails_ok_naming_the_status_and_the_body() {
        let answer = Answer {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            body: "not ready".to_owned(),
        };
        let error = answer.ok("GET /readyz").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"GET /readyz answered 503: "not ready""#
        );
    }
}
