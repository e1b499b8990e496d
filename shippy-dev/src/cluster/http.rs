//! A small HTTP/1 client: the api-gateway's `/readyz` and JSON API, Consul's
//! health API.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// How long one request may take in all.
const WITHIN: Duration = Duration::from_secs(10);

/// An answer: its status and its body as text.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Answer {
    /// The answer, if its status is 2xx; otherwise an error naming `what`
    /// with the status and (an excerpt of) the body.
    pub(crate) fn ok(self, what: &str) -> anyhow::Result<String> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let excerpt: String = self.body.chars().take(300).collect();
        anyhow::bail!("{what} answered {}: {excerpt:?}", self.status)
    }
}

/// `GET url` with `headers`.
pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    request(http::Method::GET, url, headers, None).await
}

/// `POST url` with a JSON `body`.
pub(crate) async fn post_json(url: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
    request(http::Method::POST, url, &[], Some(body)).await
}

async fn request(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Answer> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            Full::new(Bytes::from(serde_json::to_vec(body)?))
        }
        None => Full::new(Bytes::new()),
    };
    let request = builder
        .body(body)
        .with_context(|| format!("not a request: {url}"))?;
    let answer = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
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
