//! Asking the gateway over plain HTTP/1 (what the old scripts did with curl).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// An answer: its status and its body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

impl Answer {
    /// 2xx (what `curl -f` takes).
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

/// `GET url`.
pub async fn get(url: &str) -> anyhow::Result<Answer> {
    send(http::Method::GET, url, None).await
}

/// `POST url` with `body` as JSON.
pub async fn post_json(url: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
    send(http::Method::POST, url, Some(body)).await
}

async fn send(
    method: http::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Answer> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    let body = match body {
        Some(body) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(serde_json::to_vec(body)?))
        }
        None => Full::new(Bytes::new()),
    };
    let answer = async {
        let response = client.request(request.body(body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), answer)
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within 10 s"))?
}
