//! A small HTTP/1 JSON client for the api-gateway.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// A client of the gateway at one address.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: Client<HttpConnector, Full<Bytes>>,
    address: SocketAddr,
}

/// The answer: status and JSON body (`null` if none).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON.
    pub body: serde_json::Value,
}

impl Gateway {
    /// A client of the gateway at `address`.
    pub fn new(address: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            address,
        }
    }

    /// Sends one request; `Err` when no answer came (connection failed or
    /// was lost).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<Answer> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(serde_json::to_vec(body)?))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self.client.request(request.body(body)?).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Answer { status, body })
    }
}

/// The status of `GET path` at `address`, if it answered.
pub async fn get_status(address: SocketAddr, path: &str) -> Option<u16> {
    Gateway::new(address)
        .call(http::Method::GET, path, &[], None)
        .await
        .ok()
        .map(|answer| answer.status)
}
