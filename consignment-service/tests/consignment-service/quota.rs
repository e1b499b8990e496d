//! Budgets per account: one account cannot take the fleet (vessel-service's
//! per-account cap on held and confirmed room, at its default), and an
//! administrator can cancel anyone's consignment, which is logged.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shippy_harness::{
    ADMIN, Cluster, LogFile, assert_status, bearer, refused, shipping::one_container_of, spawn,
};
use shippy_proto::consignment::v1::{CancelRequest, Consignment};
use shippy_testkit::{StoreKind, on_each_store};
use tonic::Code;
use vessel_service::domain::AccountQuota;

/// A cluster on `store` with vessel-service's default per-account cap.
async fn capped(store: StoreKind) -> Cluster {
    Cluster::builder()
        .store(store)
        .quota(AccountQuota::DEFAULT)
        .start()
        .await
}

/// The probe's reproduction: 500 t, 200 t and 100 t in one container each
/// filled the seed fleet, and then nobody else could ship. With the default
/// cap (a quarter of the seed fleet: 425 containers, 200 000 kg per
/// account) the account gets 200 t; the rest is `RESOURCE_EXHAUSTED` naming
/// the cap and what it holds; another user's 1 kg ships.
async fn one_accounts_three_big_consignments_do_not_fill_the_fleet(store: StoreKind) {
    let cluster = capped(store).await;
    let (_, greedy) = cluster.user("greedy@example.com").await;
    let (_, modest) = cluster.user("modest@example.com").await;

    // Names the cap and what the account holds.
    refused(
        cluster.create(&greedy, one_container_of(500)).await,
        Code::ResourceExhausted,
        &[
            "cap of 425 containers and 200000 kg",
            "holds 0 containers and 0 kg",
        ],
    );
    cluster
        .create(&greedy, one_container_of(200))
        .await
        .expect("200 t is within the cap");
    refused(
        cluster.create(&greedy, one_container_of(100)).await,
        Code::ResourceExhausted,
        &["holds 1 containers and 200000 kg"],
    );
    let taken: i32 = cluster.used(&greedy).await.values().map(|(_, kg)| kg).sum();
    assert_eq!(taken, 200_000, "of the fleet's 800 000 kg");

    let one_kg = Consignment {
        weight: 1,
        ..one_container_of(1)
    };
    cluster
        .create(&modest, one_kg)
        .await
        .expect("someone else still ships");
}

/// Parallel creates by one account never pass the cap together: of twelve
/// 30 t consignments at once, exactly six (180 t) are placed.
async fn parallel_creates_by_one_account_stop_at_the_cap(store: StoreKind) {
    let cluster = capped(store).await;
    let (_, token) = cluster.user("parallel@example.com").await;
    let creates: Vec<_> = (0..12)
        .map(|_| {
            let mut shipping = cluster.shipping();
            let request = bearer(one_container_of(30), &token);
            tokio::spawn(async move { shipping.create_consignment(request).await })
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for create in creates {
        match create.await.unwrap() {
            Ok(_) => placed += 1,
            Err(status) => {
                assert_status(&status, Code::ResourceExhausted, &[]);
                refused += 1;
            }
        }
    }
    assert_eq!((placed, refused), (6, 6));
    assert_eq!(cluster.list(&token).await.len(), 6);
    let taken: i32 = cluster.used(&token).await.values().map(|(_, kg)| kg).sum();
    assert_eq!(taken, 180_000);
}

/// An administrator cancels another account's consignment (its room comes
/// back), and one log line says who cancelled whose; anyone else still
/// cannot see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cancels_anyones_consignment_and_it_is_logged() {
    let cluster = Cluster::start().await;
    let (owner, token) = cluster.user("owner@example.com").await;
    let (_, other) = cluster.user("nosy@example.com").await;
    let (admin, admin_token) = cluster.user(ADMIN).await;
    let log = LogFile::new("admin-cancel");
    let child = shippy_testkit::ServiceProcess::start_logging_to(
        "consignment-service",
        &[
            (
                "DATABASE_URL",
                cluster.consignment_database.expose().to_owned(),
            ),
            (
                "VESSEL_SERVICE_URL",
                format!("http://{}", cluster.vessel_addr),
            ),
            ("USER_SERVICE_URL", format!("http://{}", cluster.user_addr)),
            ("RUST_LOG", "info".into()),
        ],
        Some(log.path()),
    )
    .await;
    let mut shipping =
        shippy_proto::consignment::v1::shipping_service_client::ShippingServiceClient::new(
            spawn::channel(child.address),
        );
    let placed = shipping
        .create_consignment(bearer(one_container_of(1), &token))
        .await
        .unwrap()
        .into_inner()
        .consignment
        .unwrap();
    let cancel = |token: &str| {
        bearer(
            CancelRequest {
                id: placed.id.clone(),
            },
            token,
        )
    };
    refused(
        shipping.cancel_consignment(cancel(&other)).await,
        Code::NotFound,
        &[],
    );
    assert_eq!(cluster.list(&token).await.len(), 1, "still there");

    let cancelled = shipping
        .cancel_consignment(cancel(&admin_token))
        .await
        .expect("an administrator cancels it")
        .into_inner()
        .consignment
        .unwrap();
    assert_eq!(cancelled.owner_id, owner);
    assert!(cluster.list(&token).await.is_empty());
    assert!(cluster.used(&token).await.is_empty(), "room given back");
    child.stop().await;

    let audit = log.lines_containing("an administrator cancelled another account's consignment");
    assert_eq!(audit.len(), 1, "one line: {}", log.text());
    for wanted in [&admin, &owner, &placed.id] {
        assert!(
            audit[0].contains(wanted.as_str()),
            "{wanted} in {}",
            audit[0]
        );
    }
}

on_each_store! {
    #[tokio::test]
    one_accounts_three_big_consignments_do_not_fill_the_fleet,
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    parallel_creates_by_one_account_stop_at_the_cap,
}
