//! Vessels fill up: the saga between consignment- and vessel-service, end to
//! end against real databases — concurrency, cancel, a process killed
//! mid-way, a process that died before confirming, vessel-service down.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use consignment_service::{
    domain::{
        Consignment as Stored, Container as StoredContainer, Containers, Description, State, Weight,
    },
    store::{ConsignmentStore, Store},
};
use shippy_harness::{
    Cluster, as_service, assert_status, bearer, refused, sample, shipping::Used, spawn,
};
use shippy_proto::vessel::v1::{
    ReservationRef, ReserveRequest, Specification, vessel_service_client::VesselServiceClient,
};
use shippy_service::settings::SecretUrl;
use shippy_testkit::{RESERVATION_TTL, StoreKind, on_each_store};
use tonic::Code;

/// A cluster whose vessel-service has stopped, and the token of its
/// account `email`.
pub(crate) async fn vessel_service_down(email: &str) -> (Cluster, String) {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user(email).await;
    cluster.vessel_shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(200)).await;
    (cluster, token)
}

/// consignment-service's store in `cluster`, opened beside the service as
/// the service opens it.
async fn consignment_store(cluster: &Cluster) -> Store {
    Store::open(
        &cluster.consignment_database,
        Duration::from_secs(5),
        "consignment-service",
    )
    .await
    .unwrap()
}

/// A connection to the PostgreSQL database at `url`.
pub(crate) async fn connect(url: &SecretUrl) -> sqlx::PgConnection {
    use sqlx::Connection as _;

    sqlx::PgConnection::connect(url.expose()).await.unwrap()
}

/// A connection to `database` that ran `lock` (a `BEGIN; LOCK TABLE …`):
/// the table stays locked until it ends the transaction or is dropped.
async fn locked(database: &SecretUrl, lock: &'static str) -> sqlx::PgConnection {
    let mut connection = connect(database).await;
    sqlx::raw_sql(lock).execute(&mut connection).await.unwrap();
    connection
}

/// Waits up to 10 s until `count`, a `SELECT count(*)`, answers 1 on
/// `connection`; fails saying `never` if it does not.
pub(crate) async fn wait_until_one(
    connection: &mut sqlx::PgConnection,
    count: &'static str,
    never: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer: i64 = sqlx::query_scalar(count)
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        if answer == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "{never}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- 40 at once on the seed fleet -------------------------------------------

async fn the_seed_fleet_takes_exactly_13_of_40_concurrent_sample_consignments(store: StoreKind) {
    let cluster = Cluster::builder().store(store).start().await;
    let (_, token) = cluster.user("rush@example.com").await;
    let creates: Vec<_> = (0..40)
        .map(|_| {
            let mut shipping = cluster.shipping();
            let request = bearer(sample(), &token);
            tokio::spawn(async move { shipping.create_consignment(request).await })
        })
        .collect();
    let mut placed = Vec::new();
    let mut refusals = 0;
    for create in creates {
        match create.await.unwrap() {
            Ok(response) => placed.push(response.into_inner().consignment.unwrap()),
            Err(status) => {
                // Names the need.
                assert_status(
                    &status,
                    Code::FailedPrecondition,
                    &["3 containers, 55000 kg"],
                );
                refusals += 1;
            }
        }
    }
    assert_eq!((placed.len(), refusals), (13, 27));
    let mut per_vessel = BTreeMap::<String, i32>::new();
    for consignment in &placed {
        *per_vessel.entry(consignment.vessel_id.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, i32> = [
        ("vessel001".into(), 3),
        ("vessel002".into(), 1),
        ("vessel003".into(), 9),
    ]
    .into();
    assert_eq!(per_vessel, expected);
    // What the vessels say is used is exactly what the stored consignments
    // use, and never more than a vessel has.
    let stored = cluster.list(&token).await;
    assert_eq!(stored.len(), 13);
    let mut sums = BTreeMap::<String, (i32, i32)>::new();
    for consignment in &stored {
        let sum = sums.entry(consignment.vessel_id.clone()).or_default();
        sum.0 += i32::try_from(consignment.containers.len()).unwrap();
        sum.1 += consignment.weight;
    }
    assert_eq!(cluster.used(&token).await, sums);
    for vessel in cluster.fleet(&token).await.values() {
        assert!(
            vessel.used_capacity <= vessel.capacity && vessel.used_weight <= vessel.max_weight,
            "{vessel:?}"
        );
        assert_eq!(
            vessel.used_capacity + vessel.remaining_capacity,
            vessel.capacity
        );
    }
    // The 14th, alone, is refused too.
    refused(
        cluster.create(&token, sample()).await,
        Code::FailedPrecondition,
        &[],
    );
}

// ---- cancel -------------------------------------------------------------------

async fn cancel_gives_the_room_back_and_a_new_consignment_uses_it(store: StoreKind) {
    let cluster = Cluster::builder().store(store).start().await;
    let (_, token) = cluster.user("owner@example.com").await;
    let (_, other) = cluster.user("other@example.com").await;
    // vessel002 holds one sample consignment by weight (100 000 kg).
    let first = cluster.create(&token, sample()).await.unwrap();
    assert_eq!(first.vessel_id, "vessel002");
    let before = cluster.used(&token).await;
    assert_eq!(before["vessel002"], (3, 55_000));

    // Someone else's consignment is not theirs to cancel, nor to know of.
    refused(cluster.cancel(&other, &first.id).await, Code::NotFound, &[]);
    for (id, code) in [
        (String::new(), Code::InvalidArgument),
        ("a\u{0}b".to_owned(), Code::InvalidArgument),
        ("x".repeat(100_000), Code::NotFound),
        ("no-such-consignment".to_owned(), Code::NotFound),
    ] {
        refused(cluster.cancel(&token, &id).await, code, &[]);
    }
    assert_eq!(cluster.used(&token).await, before, "nothing moved");

    let cancelled = cluster.cancel(&token, &first.id).await.unwrap();
    assert_eq!(cancelled.id, first.id);
    assert!(cluster.list(&token).await.is_empty(), "gone from the list");
    assert!(cluster.used(&token).await.is_empty(), "room given back");
    // Again: the same answer, nothing more given back.
    cluster.cancel(&token, &first.id).await.unwrap();
    assert!(cluster.used(&token).await.is_empty());

    // The room is there for the next one: vessel002 again.
    let next = cluster.create(&token, sample()).await.unwrap();
    assert_eq!(next.vessel_id, "vessel002");
    assert_eq!(cluster.used(&token).await["vessel002"], (3, 55_000));
}

// ---- failures between the steps ---------------------------------------------------

/// A consignment-service process killed after it reserved and before it
/// stored: the room comes back once the hold expires, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consignment_service_killed_between_reserve_and_store_holds_nothing_for_long() {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user("killed@example.com").await;
    let (child, database) = cluster.consignment_process("killed_mid_saga", &[]).await;
    let channel = spawn::channel(child.address);

    // Hold the table so the insert waits: the process is between the steps.
    let mut lock = locked(
        &database,
        "BEGIN; LOCK TABLE consignments IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let mut shipping =
        shippy_proto::consignment::v1::shipping_service_client::ShippingServiceClient::new(channel);
    let request = bearer(sample(), &token);
    let create = tokio::spawn(async move { shipping.create_consignment(request).await });
    let reserved: Used = [("vessel002".into(), (3, 55_000))].into();
    cluster
        .wait_for_used(&token, &reserved, Duration::from_secs(10))
        .await;

    drop(child); // SIGKILL
    let killed_at = Instant::now();
    assert!(
        create.await.unwrap().is_err(),
        "the caller learns nothing was shipped"
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();

    cluster
        .wait_for_used(
            &token,
            &BTreeMap::new(),
            RESERVATION_TTL + Duration::from_secs(10),
        )
        .await;
    eprintln!(
        "room back {:?} after the kill (hold time {RESERVATION_TTL:?})",
        killed_at.elapsed()
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM consignments")
        .fetch_one(&mut lock)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing was stored");
}

/// What a process that died after storing and before confirming leaves:
/// a pending consignment. The recovery sweep confirms it while its hold
/// lasts; one whose hold is gone is cancelled and never listed.
#[tokio::test]
async fn the_recovery_sweep_settles_what_a_dead_process_left_pending() {
    let cluster = Cluster::start().await;
    let (owner, token) = cluster.user("orphan@example.com").await;
    let store = consignment_store(&cluster).await;
    let orphan = |id: &str, vessel_id: &str| Stored {
        id: id.into(),
        owner_id: owner.clone(),
        description: Description::parse(format!("left behind {id}")).unwrap(),
        weight: Weight::parse(55_000).unwrap(),
        containers: Containers::parse(
            (0..3)
                .map(|n| StoredContainer {
                    id: format!("c{n}"),
                    customer_id: "cust001".into(),
                    origin: "Derby".into(),
                    user_id: owner.clone(),
                })
                .collect(),
        )
        .unwrap(),
        vessel_id: vessel_id.into(),
        created_at: chrono::Utc::now() - chrono::Duration::seconds(2),
        state: State::Pending,
        idempotency: None,
    };
    // One whose room is still held...
    let held = VesselServiceClient::new(cluster.vessels.clone())
        .reserve(as_service(ReserveRequest {
            reservation_id: "held-orphan".into(),
            specification: Some(Specification {
                capacity: 3,
                max_weight: 55_000,
            }),
            owner_id: owner.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    store
        .insert(&orphan("held-orphan", &held.vessel_id))
        .await
        .unwrap();
    // ...and one whose hold is already gone.
    store
        .insert(&orphan("lost-orphan", "vessel001"))
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<String> = cluster
            .list(&token)
            .await
            .into_iter()
            .map(|consignment| consignment.id)
            .collect();
        // One round settles both, one after the other: wait for both.
        let lost = store.get("lost-orphan").await.unwrap().unwrap().state;
        if ids == ["held-orphan"] && lost == State::Cancelled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listed {ids:?}; lost-orphan {lost:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Confirmed: its room outlives the hold time.
    tokio::time::sleep(RESERVATION_TTL + Duration::from_millis(500)).await;
    assert_eq!(cluster.used(&token).await[&held.vessel_id], (3, 55_000));
    let again = VesselServiceClient::new(cluster.vessels.clone())
        .confirm(as_service(ReservationRef {
            reservation_id: "held-orphan".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(again.confirmed);
}

/// Storing fails (here: the table refuses every row): the room is given
/// back at once, not after the hold time.
#[tokio::test]
async fn when_storing_fails_the_room_is_released_at_once() {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user("refused@example.com").await;
    let mut database = connect(&cluster.consignment_database).await;
    sqlx::raw_sql("ALTER TABLE consignments ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        .execute(&mut database)
        .await
        .unwrap();
    refused(cluster.create(&token, sample()).await, Code::Internal, &[]);
    assert!(
        cluster.used(&token).await.is_empty(),
        "the room came back at once"
    );
    sqlx::raw_sql("ALTER TABLE consignments DROP CONSTRAINT refuse_all")
        .execute(&mut database)
        .await
        .unwrap();
    let placed = cluster.create(&token, sample()).await.unwrap();
    assert_eq!(cluster.used(&token).await[&placed.vessel_id], (3, 55_000));
}

#[tokio::test]
async fn vessel_service_down_is_unavailable_and_holds_and_stores_nothing() {
    let (cluster, token) = vessel_service_down("down@example.com").await;
    refused(
        cluster.create(&token, sample()).await,
        Code::Unavailable,
        &[],
    );
    let store = consignment_store(&cluster).await;
    let far_future = chrono::Utc::now() + chrono::Duration::days(1);
    for state in [State::Pending, State::Confirmed, State::Cancelling] {
        assert!(
            store
                .unsettled(state, far_future, 10)
                .await
                .unwrap()
                .is_empty(),
            "nothing stored in state {state:?}"
        );
    }
    assert!(cluster.list(&token).await.is_empty());
}

/// vessel-service killed mid-call (a real process, its Reserve waiting on
/// its database when it dies): the create is `UNAVAILABLE` — retry later —
/// not `INTERNAL`, though tonic reports the broken connection as an
/// unknown or internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vessel_service_killed_mid_call_is_unavailable() {
    let cluster = Cluster::start().await;
    let (_, token) = cluster.user("midcall@example.com").await;
    let database = shippy_testkit::fresh_postgres_database("vessel_killed_mid_call").await;
    let vessels = shippy_testkit::ServiceProcess::start(
        "vessel-service",
        &[
            ("DATABASE_URL", database.expose().to_owned()),
            ("USER_SERVICE_URL", format!("http://{}", cluster.user_addr)),
            // Its expiry sweep must not be what waits on the lock below.
            ("RESERVATION_SWEEP_INTERVAL", "1h".into()),
        ],
    )
    .await;
    let (address, shutdown) = spawn::consignment_service(
        shippy_testkit::fresh_postgres_database("vessel_killed_mid_call_c").await,
        vessels.address,
        cluster.user_addr,
    )
    .await;
    let shipping = spawn::channel(address);
    shippy_testkit::wait_for_health(
        &shipping,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
    // Hold the fleet so the Reserve waits inside vessel-service.
    let mut lock = locked(
        &database,
        "BEGIN; LOCK TABLE vessels IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let request = bearer(sample(), &token);
    let mut client =
        shippy_proto::consignment::v1::shipping_service_client::ShippingServiceClient::new(
            shipping,
        );
    let create = tokio::spawn(async move { client.create_consignment(request).await });
    let mut watch = connect(&database).await;
    wait_until_one(
        &mut watch,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        "the Reserve never reached the lock",
    )
    .await;
    drop(vessels); // SIGKILL, mid-call
    refused(create.await.unwrap(), Code::Unavailable, &["retry"]);
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    shutdown.trigger();
}

on_each_store! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    the_seed_fleet_takes_exactly_13_of_40_concurrent_sample_consignments,
    #[tokio::test]
    cancel_gives_the_room_back_and_a_new_consignment_uses_it,
}
