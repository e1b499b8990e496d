//! Who the client is, and telling the services: the address a request comes
//! from (through trusted proxies only), passed on to every gRPC call with
//! the services' shared secret, so user-service's login throttle and every
//! service's request budgets count each browser on its own rather than all
//! of them as the gateway.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use ipnet::IpNet;
use shippy_auth::service::ServiceToken;

/// Which proxies are believed, and the secret that lets the gateway name
/// its clients to the services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Forwarding {
    /// The services' shared secret (the same `SERVICE_TOKEN` as theirs): with
    /// it, each call names the client it is made for, so throttles and
    /// request budgets count browsers, not the gateway. Unset: every call
    /// counts as the gateway's own.
    #[arg(long, env = "SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<ServiceToken>,

    /// Proxies in front of the gateway (CIDRs, comma-separated, e.g.
    /// `10.0.0.0/8,192.168.1.10/32`) whose `X-Forwarded-For` is believed.
    /// Default none: the header is ignored, so nobody can pick the address
    /// they are counted under.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', num_args = 0..)]
    pub trusted_proxies: Vec<IpNet>,
}

impl Forwarding {
    /// The client of a request from `peer` with `headers`: the peer itself,
    /// unless it is a trusted proxy; then the nearest address in
    /// `X-Forwarded-For` that is not a trusted proxy (addresses further left
    /// were written by the client and prove nothing).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        // From the nearest hop outwards: past trusted proxies to the first
        // address they vouch for. A hop that is no address ends the walk
        // there (what lies beyond it proves nothing): the last trusted hop
        // then counts.
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(address) = parse_hop(hop) else {
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        Some(client)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address))
    }
}

/// One `X-Forwarded-For` hop: an address, with or without a port
/// (`203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::7]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|address| address.ip()))
}

/// The caller of one request: its headers (for its token) and its address.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The request's headers.
    pub headers: HeaderMap,
    client: Option<IpAddr>,
    forwarding: Arc<Forwarding>,
}

impl Caller {
    /// Adds the client's address and the secret that vouches for it to a
    /// call made for this caller (nothing without a configured secret).
    pub fn forward<T>(&self, request: &mut tonic::Request<T>) {
        if let (Some(token), Some(client)) = (&self.forwarding.service_token, self.client) {
            token.forward_for(request, client);
        }
    }

    /// `message` as a call made for this caller ([`Self::forward`]).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.forward(&mut request);
        request
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Forwarding>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let forwarding = Arc::<Forwarding>::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        Ok(Self {
            client: forwarding.client(peer, &parts.headers),
            headers: parts.headers.clone(),
            forwarding,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn forwarding(trusted: &[&str]) -> Forwarding {
        Forwarding {
            service_token: None,
            trusted_proxies: trusted.iter().map(|net| net.parse().unwrap()).collect(),
        }
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn a_forged_header_from_an_untrusted_peer_changes_nothing() {
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(
            forwarding(&[]).client(Some(peer), &xff("198.51.100.1")),
            Some(peer)
        );
        assert_eq!(
            forwarding(&["10.0.0.0/8"]).client(Some(peer), &xff("198.51.100.1")),
            Some(peer)
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let proxies = forwarding(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // The client wrote "1.1.1.1" itself; the proxy appended the real peer.
        assert_eq!(
            proxies.client(Some(proxy), &xff("1.1.1.1, 198.51.100.9, 10.9.9.9")),
            Some("198.51.100.9".parse().unwrap())
        );
        // Garbage in the header: the proxy itself is the client.
        assert_eq!(
            proxies.client(Some(proxy), &xff("not an address")),
            Some(proxy)
        );
        // Garbage further out than the real client changes nothing; hops
        // with ports are addresses too.
        assert_eq!(
            proxies.client(Some(proxy), &xff("x, 198.51.100.9:4711, 10.9.9.9")),
            Some("198.51.100.9".parse().unwrap())
        );
        assert_eq!(
            proxies.client(Some(proxy), &xff("[2001:db8::7]:4711")),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(proxies.client(Some(proxy), &HeaderMap::new()), Some(proxy));
        // An IPv4 peer seen as IPv6-mapped is still trusted.
        assert_eq!(
            proxies.client(
                Some("::ffff:10.1.2.3".parse().unwrap()),
                &xff("198.51.100.9")
            ),
            Some("198.51.100.9".parse().unwrap())
        );
    }
}
