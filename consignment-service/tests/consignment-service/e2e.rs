//! The three services together, in-process on random ports, against real
//! PostgreSQL, NATS and (the `on_mongodb_` tests) MongoDB: a user logs in and
//! ships consignments.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shippy_auth::{AUDIENCE, Claims, ISSUER};
use shippy_harness::{
    Cluster, bearer, refused, sample,
    shipping::{create_at, page_request, pages_at},
    spawn, with_metadata,
};
use shippy_proto::{
    consignment::v1::{Consignment, GetRequest, shipping_service_client::ShippingServiceClient},
    user::v1::{GetPublicKeysRequest, user_service_client::UserServiceClient},
};
use shippy_testkit::{
    LateProxy, StoreKind, fresh_postgres_database, health_status, on_each_store, socket_addr_of,
    wait_for_health, with_socket_addr,
};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::tokens;

use crate::saga::vessel_service_down;

async fn a_user_ships_a_consignment_and_only_they_see_it(store: StoreKind) {
    let cluster = Cluster::builder().store(store).start().await;
    let (alice, token) = cluster.user("alice@example.com").await;

    let created = cluster
        .shipping()
        .create_consignment(bearer(sample(), &token))
        .await
        .expect("created")
        .into_inner();
    assert!(created.created);
    let consignment = created.consignment.expect("the stored consignment");
    assert_eq!(consignment.owner_id, alice);
    assert_eq!(
        consignment.vessel_id, "vessel002",
        "the smallest seed vessel that fits"
    );
    assert!(!consignment.id.is_empty());
    assert_eq!(consignment.containers.len(), 3);
    assert!(consignment.containers.iter().all(|c| !c.id.is_empty()));

    let listed = cluster.list(&token).await;
    assert_eq!(listed, vec![consignment.clone()]);

    // A second user sees none of the first user's.
    let (_bob, bob_token) = cluster.user("bob@example.com").await;
    assert!(cluster.list(&bob_token).await.is_empty());

    // The original's `token` metadata key works too.
    let legacy = cluster
        .shipping()
        .get_consignments(with_metadata(
            Request::new(GetRequest::default()),
            "token",
            &token,
        ))
        .await
        .expect("legacy key")
        .into_inner();
    assert_eq!(legacy.consignments.len(), 1);
}

async fn listing_is_newest_first_and_paginated(store: StoreKind) {
    let cluster = Cluster::builder().store(store).start().await;
    let (_, token) = cluster.user("pager@example.com").await;
    let mut created = Vec::new();
    for n in 0..5 {
        let consignment = Consignment {
            description: format!("Consignment {n}"),
            ..sample()
        };
        created.push(cluster.create(&token, consignment).await.unwrap().id);
    }
    created.reverse();
    let mut seen = Vec::new();
    for page in cluster.pages(&token, 2).await {
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(seen, created, "newest first, each once");
    let bad_page = cluster
        .shipping()
        .get_consignments(page_request(&token, 2, "garbage"))
        .await;
    refused(bad_page, Code::InvalidArgument, &[]);
}

fn token_signed_with(key_pem: &str, kid: &str, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn missing_garbage_expired_and_forged_tokens_are_refused() {
    let cluster = Cluster::start().await;
    let (alice, _token) = cluster.user("carol@example.com").await;
    let kid = UserServiceClient::new(cluster.users.clone())
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys[0]
        .kid
        .clone();
    let now = chrono::Utc::now().timestamp() as u64;
    let expired = token_signed_with(
        cluster.key_pem.expose(),
        &kid,
        &Claims {
            sub: alice.clone(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now - 7200,
            exp: now - 3600,
            roles: Vec::new(),
        },
    );
    let forged = token_signed_with(
        &tokens::generate_pem(1).unwrap(),
        &kid,
        &Claims {
            sub: alice,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + 600,
            roles: Vec::new(),
        },
    );

    let no_token = cluster.shipping().create_consignment(sample()).await;
    refused(no_token, Code::Unauthenticated, &[]);
    for (what, token) in [
        ("garbage", "garbage"),
        ("expired", expired.as_str()),
        ("forged", forged.as_str()),
    ] {
        eprintln!("a {what} token");
        refused(
            cluster.create(token, sample()).await,
            Code::Unauthenticated,
            &[],
        );
        let listing = cluster
            .shipping()
            .get_consignments(bearer(GetRequest::default(), token))
            .await;
        refused(listing, Code::Unauthenticated, &[]);
    }
    let listing = cluster
        .shipping()
        .get_consignments(bearer(GetRequest::default(), &expired))
        .await;
    refused(listing, Code::Unauthenticated, &["expired"]);
}

#[tokio::test]
async fn bad_consignments_are_invalid_and_oversized_ones_fit_no_vessel() {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user("dave@example.com").await;
    let mut duplicate_ids = sample();
    duplicate_ids.containers[0].id = "same".into();
    duplicate_ids.containers[1].id = "same".into();
    let mut nul_origin = sample();
    nul_origin.containers[0].origin = "port\0".into();
    for (bad, wanted) in [
        (
            Consignment {
                description: String::new(),
                ..sample()
            },
            "description",
        ),
        (
            Consignment {
                weight: 0,
                ..sample()
            },
            "weight",
        ),
        (
            Consignment {
                containers: vec![],
                ..sample()
            },
            "container",
        ),
        (duplicate_ids, "more than once"),
        // NUL reached PostgreSQL and came back INTERNAL.
        (
            Consignment {
                description: "nul\0byte".into(),
                ..sample()
            },
            "description",
        ),
        (nul_origin, "container origin"),
        (
            Consignment {
                description: format!("{}\0", "x".repeat(1_000_000)),
                ..sample()
            },
            "description",
        ),
    ] {
        refused(
            cluster.create(&token, bad).await,
            Code::InvalidArgument,
            &[wanted],
        );
    }

    let oversized = Consignment {
        weight: 1_000_000,
        ..sample()
    };
    // No vessel carries a million kg.
    refused(
        cluster.create(&token, oversized).await,
        Code::FailedPrecondition,
        &["1000000 kg"],
    );
    assert!(cluster.list(&token).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn vessel_service_down_is_unavailable_promptly() {
    let (cluster, token) = vessel_service_down("erin@example.com").await;
    let started = Instant::now();
    refused(
        cluster.create(&token, sample()).await,
        Code::Unavailable,
        &["vessel-service"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        started.elapsed()
    );
    // Once the breaker has seen it fail, callers are answered at once.
    let mut open = None;
    for _ in 0..3 {
        let started = Instant::now();
        let status = refused(
            cluster.create(&token, sample()).await,
            Code::Unavailable,
            &[],
        );
        if status.message().contains("circuit open") {
            open = Some(started.elapsed());
            break;
        }
    }
    let open = open.expect("the circuit opened");
    eprintln!("UNAVAILABLE with the circuit open took {open:?}");
    // The service is still up and lost nothing.
    assert!(cluster.list(&token).await.is_empty());
}

#[tokio::test]
async fn tokens_of_a_rotated_key_are_accepted_after_refetching_the_keys() {
    let mut cluster = Cluster::start().await;
    let (_, old_token) = cluster.user("frank@example.com").await;
    assert!(
        cluster.list(&old_token).await.is_empty(),
        "keys fetched at start"
    );

    cluster.rotate_user_key().await;
    let (_, new_token) = cluster.user("grace@example.com").await;
    assert_ne!(
        shippy_auth::token_kid(&new_token).unwrap(),
        shippy_auth::token_kid(&old_token).unwrap(),
        "signed with the new key"
    );
    // consignment-service has never seen the new kid: it refetches the keys.
    cluster
        .create(&new_token, sample())
        .await
        .expect("accepted after a refetch");
    // Tokens of the old key stay valid until they expire.
    assert!(cluster.list(&old_token).await.is_empty());
}

#[tokio::test]
async fn tokens_are_verified_locally_without_calling_user_service() {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user("heidi@example.com").await;
    assert!(cluster.list(&token).await.is_empty());
    cluster.user_shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster
        .create(&token, sample())
        .await
        .expect("user-service is down, and no call needs it");
    assert_eq!(cluster.list(&token).await.len(), 1);
}

/// vessel- and consignment-service start while their databases cannot be
/// reached (a port nothing listens on yet): both are up, NOT_SERVING, and
/// answer UNAVAILABLE; once the databases answer, both serve and a
/// consignment ships through them.
async fn services_start_before_their_databases_and_serve_once_they_answer(store: StoreKind) {
    let cluster = Cluster::builder().store(store).start().await;
    let (_, token) = cluster.user("early@example.com").await;
    let vessel_db = store.fresh_database("late_vessels").await;
    let consignment_db = store.fresh_database("late_consignments").await;
    let mut vessel_proxy = LateProxy::reserve(socket_addr_of(&vessel_db));
    let mut consignment_proxy = LateProxy::reserve(socket_addr_of(&consignment_db));
    let (vessel_addr, vessel_shutdown) = spawn::vessel_service(
        with_socket_addr(&vessel_db, vessel_proxy.address()),
        cluster.user_settings.serve.listen_addr,
    )
    .await;
    let (consignment_addr, consignment_shutdown) = spawn::consignment_service(
        with_socket_addr(&consignment_db, consignment_proxy.address()),
        vessel_addr,
        cluster.user_settings.serve.listen_addr,
    )
    .await;
    let vessels = spawn::channel(vessel_addr);
    let shipping = spawn::channel(consignment_addr);

    tokio::time::sleep(Duration::from_millis(500)).await;
    for channel in [&vessels, &shipping] {
        assert_eq!(
            health_status(channel.clone(), "").await,
            ServingStatus::NotServing,
            "{store:?}: up but not serving without its database"
        );
    }
    // No database yet.
    let no_database = ShippingServiceClient::new(shipping.clone())
        .get_consignments(bearer(GetRequest::default(), &token))
        .await;
    refused(no_database, Code::Unavailable, &[]);

    vessel_proxy.start().await;
    consignment_proxy.start().await;
    for channel in [&vessels, &shipping] {
        wait_for_health(channel, ServingStatus::Serving).await;
    }
    let created = create_at(shipping.clone(), bearer(sample(), &token))
        .await
        .expect("created once the databases answer");
    assert_eq!(
        created.vessel_id, "vessel002",
        "seeded once the database answered"
    );
    let listed = pages_at(shipping, &token, 100).await;
    assert_eq!(listed, vec![vec![created]]);
    vessel_shutdown.trigger();
    consignment_shutdown.trigger();
}

/// Peers named `dns:///host:port` (as in Kubernetes, a headless Service's
/// name) are found through the system's resolver: consignment-service
/// reaches vessel- and user-service by the name `localhost`.
#[tokio::test]
async fn peers_named_by_dns_are_found_through_the_system_resolver() {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user("dns@example.com").await;
    let (vessel_addr, vessel_shutdown) = spawn::vessel_service(
        fresh_postgres_database("dns_vessels").await,
        cluster.user_settings.serve.listen_addr,
    )
    .await;
    let (shipping_addr, shipping_shutdown) = spawn::consignment_service_at(
        fresh_postgres_database("dns_consignments").await,
        format!("dns:///localhost:{}", vessel_addr.port()),
        format!(
            "dns:///localhost:{}",
            cluster.user_settings.serve.listen_addr.port()
        ),
        Default::default(),
    )
    .await;
    let shipping = spawn::channel(shipping_addr);
    wait_for_health(&shipping, ServingStatus::Serving).await;
    let created = create_at(shipping, bearer(sample(), &token))
        .await
        .expect("created through peers found by DNS");
    assert_eq!(created.vessel_id, "vessel002");
    shipping_shutdown.trigger();
    vessel_shutdown.trigger();
}

#[tokio::test]
async fn health_is_not_serving_until_the_token_keys_are_held() {
    use consignment_service::app::Application;
    use shippy_testkit::{LateProxy, fresh_postgres_database, health_status, wait_for_health};
    use tonic_health::pb::health_check_response::ServingStatus;

    let cluster = Cluster::start().await;
    let mut user_service = LateProxy::reserve(cluster.user_settings.serve.listen_addr);
    let app = Application::build(&shippy_harness::settings::consignment(
        fresh_postgres_database("late_keys").await,
        "http://127.0.0.1:9".into(),
        format!("http://{}", user_service.address()),
    ))
    .await
    .unwrap();
    let channel = spawn::channel(app.local_addr().unwrap());
    let shutdown = shippy_service::Shutdown::new();
    tokio::spawn(app.run(shutdown.clone()));
    // The store is ready within moments; without keys it must not say so.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            health_status(channel.clone(), "").await,
            ServingStatus::NotServing
        );
    }
    user_service.start().await;
    wait_for_health(&channel, ServingStatus::Serving).await;
    shutdown.trigger();
}

on_each_store! {
    #[tokio::test]
    a_user_ships_a_consignment_and_only_they_see_it,
    #[tokio::test]
    listing_is_newest_first_and_paginated,
    #[tokio::test]
    services_start_before_their_databases_and_serve_once_they_answer,
}
