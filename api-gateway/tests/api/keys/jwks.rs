//! The JWKS the gateway serves (`/.well-known/jwks.json`): every key of the
//! ring as an OKP JWK, cacheable no longer than the refresh, and the last
//! set still served, at once, while user-service hangs.

use std::time::{Duration, Instant};

use super::{Keyed, REFRESH, Source, jwks_fresh_for, key_file, listed};

#[tokio::test]
async fn the_jwks_lists_every_key_as_an_okp_jwk_cacheable_no_longer_than_the_refresh() {
    let file = key_file("jwks", 2);
    let keyed = Keyed::start(Source::File(file)).await;
    let answer = keyed.gateway.get("/.well-known/jwks.json", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.headers["cache-control"].to_str().unwrap(),
        format!("public, max-age={}", REFRESH.as_secs())
    );
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let keys = answer.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "every key of the ring: {}", answer.text);
    for key in keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "EdDSA");
        let x = key["x"].as_str().unwrap();
        assert_eq!(x.len(), 43, "32 bytes, base64url without padding: {x}");
        assert!(!x.contains(['+', '/', '=']));
    }
    // The kids are the ring's (RFC 7638 thumbprints of the private keys'
    // public halves), in its order.
    let kids: Vec<&str> = keys
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, listed(&keyed.source));
    let token = keyed.gateway.user("jwks@example.com").await.1;
    assert_eq!(
        keys[0]["kid"].as_str().unwrap(),
        shippy_auth::token_kid(&token).unwrap(),
        "the signing key first"
    );
}

#[tokio::test]
async fn the_jwks_serves_the_last_set_while_user_service_hangs() {
    let file = key_file("jwks-hung", 2);
    let keyed = Keyed::start(Source::File(file)).await;
    let kids = |answer: &crate::Answer| -> Vec<String> {
        answer.json["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|key| key["kid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = keyed.gateway.get("/.well-known/jwks.json", None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(kids(&first).len(), 2, "{}", first.text);

    // Hung, not refusing: a call to it only ends at the gateway's timeout.
    crate::signal(&keyed.user, "-STOP");
    tokio::time::sleep(jwks_fresh_for() + Duration::from_millis(200)).await;
    let path = "/.well-known/jwks.json";
    // Past its freshness the set is served at once while a fetch (which
    // hangs) runs in the background: no request waits for user-service.
    let timeout: Duration = api_gateway::upstream::Breakers::default()
        .user_service_timeout
        .into();
    let asked = Instant::now();
    let (a, b, c) = tokio::join!(
        keyed.gateway.get(path, None),
        keyed.gateway.get(path, None),
        keyed.gateway.get(path, None)
    );
    let d = keyed.gateway.get(path, None).await;
    let took = asked.elapsed();
    crate::signal(&keyed.user, "-CONT");
    for answer in [&a, &b, &c, &d] {
        assert_eq!(
            (answer.status, kids(answer)),
            (200, kids(&first)),
            "while user-service hangs, the last set it gave: {}",
            answer.text
        );
    }
    assert!(
        took < timeout,
        "four answers took {took:?}: they waited for the hung user-service ({timeout:?} each)"
    );
}
