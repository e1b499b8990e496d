//! Consul, through its HTTP API: the health of a service's instances (with
//! `rs-consul`, blocking queries) and registering this instance with the
//! local agent (the agent endpoints `rs-consul` lacks, by hand over
//! hyper-util, the HTTP client already in the tree).

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rs_consul::{Consul, GetServiceNodesRequest, QueryOptions};
use serde::Serialize;

/// How long an agent call may take.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Consul call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// The agent could not be reached or did not answer in time.
    #[error("Consul at {address} is unreachable: {reason}")]
    Unreachable {
        /// The agent's address.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The agent refused the request for want of permission: with ACLs on,
    /// the token (`CONSUL_HTTP_TOKEN`) is missing, unknown, or its policy
    /// does not allow it (e.g. registering another service's name).
    #[error(
        "Consul refused it (403): the ACL token in CONSUL_HTTP_TOKEN is missing, unknown or lacks the permission ({0})"
    )]
    Forbidden(String),
    /// The agent refused the request.
    #[error("Consul refused the request: {0}")]
    Refused(String),
}

/// One healthy instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance {
    /// Its Consul service id, unique per instance.
    pub id: String,
    /// Where to dial it: `http://host:port`.
    pub url: String,
}

/// The healthy instances of a service, and the index to wait on for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances {
    /// Passing instances, sorted by id.
    pub instances: Vec<Instance>,
    /// Consul's index for blocking queries.
    pub index: u64,
}

/// What registers an instance with the agent.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Unique per instance.
    #[serde(rename = "ID")]
    pub id: String,
    /// The service's name, e.g. `vessel-service`.
    #[serde(rename = "Name")]
    pub name: String,
    /// The host peers dial.
    #[serde(rename = "Address")]
    pub address: String,
    /// The port peers dial.
    #[serde(rename = "Port")]
    pub port: u16,
    /// e.g. `version=0.1.0`.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// e.g. `version: 0.1.0`.
    #[serde(rename = "Meta")]
    pub meta: HashMap<String, String>,
    /// The health check Consul runs itself.
    #[serde(rename = "Check")]
    pub check: Check,
}

/// A health check Consul runs: gRPC (`grpc.health.v1.Health/Check` on
/// the whole server) or, for an HTTP service, a GET that must answer 2xx.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `host:port` to check over gRPC.
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// `http://host:port/path` to GET instead.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Plain-text gRPC.
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    /// How often, e.g. `2s`.
    #[serde(rename = "Interval")]
    pub interval: String,
    /// How long a check may take, e.g. `1s`.
    #[serde(rename = "Timeout")]
    pub timeout: String,
    /// How long an instance may fail its check before Consul removes it (at least `1m`).
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    pub deregister_critical_service_after: String,
}

/// A client of one Consul agent.
#[derive(Clone)]
pub struct ConsulClient {
    base: String,
    token: Option<crate::settings::Secret>,
    http: Client<HttpConnector, Full<Bytes>>,
    consul: std::sync::Arc<Consul>,
}

impl std::fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulClient")
            .field("base", &self.base)
            .finish()
    }
}

impl ConsulClient {
    /// A client of the agent at `address` (`127.0.0.1:8500`, as Consul's own
    /// tools read `CONSUL_HTTP_ADDR`, or with an `http://` scheme).
    ///
    /// With `token`, every request carries it (`X-Consul-Token`), as
    /// Consul's ACLs require.
    pub fn new(address: &str, token: Option<&crate::settings::Secret>) -> Self {
        let base = if address.contains("://") {
            address.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", address.trim_end_matches('/'))
        };
        let consul = Consul::new(rs_consul::Config {
            address: base.clone(),
            token: token.map(|token| token.expose().to_owned()),
            ..Default::default()
        });
        Self {
            token: token.cloned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            consul: std::sync::Arc::new(consul),
            base,
        }
    }

    /// The agent's address, for logs.
    pub fn address(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ConsulError {
        ConsulError::Unreachable {
            address: self.base.clone(),
            reason: reason.to_string(),
        }
    }

    async fn put(&self, path: &str, body: Bytes) -> Result<(), ConsulError> {
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token.expose());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| ConsulError::Refused(error.to_string()))?;
        let response = tokio::time::timeout(AGENT_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| self.unreachable("no answer in time"))?
            .map_err(|error| self.unreachable(crate::error::chain(&error)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
            .unwrap_or_default();
        // Consul's own words, quoted short and escaped.
        let said = crate::text::excerpt(body.trim());
        if status == http::StatusCode::FORBIDDEN {
            return Err(ConsulError::Forbidden(said));
        }
        Err(ConsulError::Refused(format!("{status}: {said}")))
    }

    /// Registers (or updates) an instance with the agent.
    pub async fn register(&self, registration: &Registration) -> Result<(), ConsulError> {
        let body = serde_json::to_vec(registration)
            .map_err(|error| ConsulError::Refused(error.to_string()))?;
        self.put("/v1/agent/service/register", body.into()).await
    }

    /// Removes an instance from the agent.
    pub async fn deregister(&self, id: &str) -> Result<(), ConsulError> {
        self.put(&format!("/v1/agent/service/deregister/{id}"), Bytes::new())
            .await
    }

    /// The passing instances of `service`. With `wait_after = Some(index)`,
    /// waits (up to `wait`) until they differ from those at `index`.
    pub async fn healthy(
        &self,
        service: &str,
        wait_after: Option<u64>,
        wait: Duration,
    ) -> Result<Instances, ConsulError> {
        self.instances(service, true, wait_after, wait).await
    }

    /// Every registered instance of `service`, passing its check or not.
    pub async fn registered(&self, service: &str) -> Result<Vec<Instance>, ConsulError> {
        Ok(self
            .instances(service, false, None, Duration::ZERO)
            .await?
            .instances)
    }

    async fn instances(
        &self,
        service: &str,
        passing: bool,
        wait_after: Option<u64>,
        wait: Duration,
    ) -> Result<Instances, ConsulError> {
        let options = QueryOptions {
            index: wait_after,
            wait: wait_after.map(|_| wait),
            // Consul adds up to wait/16 of jitter to a blocking query.
            timeout: Some(wait + wait / 16 + Duration::from_secs(5)),
            ..Default::default()
        };
        let answer = self
            .consul
            .get_service_nodes(
                GetServiceNodesRequest {
                    service,
                    passing,
                    ..Default::default()
                },
                Some(options),
            )
            .await
            .map_err(|error| self.unreachable(error))?;
        let mut instances: Vec<Instance> = answer
            .response
            .into_iter()
            .map(|node| {
                let host = if node.service.address.is_empty() {
                    node.node.address
                } else {
                    node.service.address
                };
                Instance {
                    id: node.service.id,
                    url: format!("http://{}", host_port(&host, node.service.port)),
                }
            })
            .collect();
        instances.sort();
        Ok(Instances {
            instances,
            index: answer.index,
        })
    }
}

/// `host:port`, with IPv6 hosts in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod token_tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What one HTTP request to a loopback listener looked like.
    async fn one_request(token: Option<&str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 8192];
            let read = socket.read(&mut buffer).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buffer[..read]).into_owned()
        });
        let secret: Option<crate::settings::Secret> = token.map(|token| token.parse().unwrap());
        let client = ConsulClient::new(&address, secret.as_ref());
        client.deregister("some-id").await.unwrap();
        seen.await.unwrap()
    }

    #[tokio::test]
    async fn the_acl_token_goes_with_every_request_and_never_into_debug_output() {
        let request = one_request(Some("acl-s3cret")).await;
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-consul-token: acl-s3cret"),
            "{request}"
        );
        let request = one_request(None).await;
        assert!(
            !request.to_ascii_lowercase().contains("x-consul-token"),
            "{request}"
        );
        let secret: crate::settings::Secret = "acl-s3cret".parse().unwrap();
        let client = ConsulClient::new("127.0.0.1:1", Some(&secret));
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
