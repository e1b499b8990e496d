//! The contract every consignment store must keep, run against each store:
//! PostgreSQL and MongoDB, a fresh database per test. The MongoDB cases are
//! marked ignored for a plain `cargo test`; `make test` includes them, on the
//! server `cargo dev infra up mongodb` started (`TEST_MONGODB_URL`).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{ops::ControlFlow, time::Duration};

use chrono::{DateTime, Utc};
use consignment_service::{
    domain::{
        Consignment, Container, Containers, Description, Idempotency, IdempotencyKey, State, Weight,
    },
    store::{ConsignmentStore, Cursor, Store, StoreError},
};
use shippy_service::settings::SecretUrl;
use shippy_testkit::{
    fresh_mongodb_database, fresh_postgres_database, init_test_logging, store_contract,
};

const TIMEOUT: Duration = Duration::from_secs(5);
/// What the store's connections are named, as the service names them.
const NAME: &str = "consignment-service";

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_800_000_000_000_000 + micros).unwrap()
}

fn consignment(id: &str, owner: &str, created_at: DateTime<Utc>) -> Consignment {
    Consignment {
        id: id.into(),
        owner_id: owner.into(),
        description: Description::parse(format!("Consignment {id}")).unwrap(),
        weight: Weight::parse(55_000).unwrap(),
        containers: Containers::parse(vec![
            Container {
                id: "c1".into(),
                customer_id: "cust001".into(),
                origin: "Manchester, United Kingdom".into(),
                user_id: owner.into(),
            },
            Container {
                id: "c2".into(),
                customer_id: "cust002".into(),
                origin: "Derby, United Kingdom".into(),
                user_id: "user001".into(),
            },
        ])
        .unwrap(),
        vessel_id: "vessel001".into(),
        created_at,
        state: State::Confirmed,
        idempotency: None,
    }
}

fn ids(consignments: &[Consignment]) -> Vec<&str> {
    consignments.iter().map(|c| c.id.as_str()).collect()
}

// ---- the contract ----------------------------------------------------------

async fn inserted_consignment_reads_back_whole(store: impl ConsignmentStore) {
    let stored = consignment("a", "owner-1", at(123_456));
    store.insert(&stored).await.unwrap();
    let listed = store.list_by_owner("owner-1", None, 10).await.unwrap();
    assert_eq!(
        listed,
        vec![stored],
        "every field, containers and microseconds included"
    );
}

async fn a_taken_id_is_already_exists(store: impl ConsignmentStore) {
    store.insert(&consignment("dup", "o", at(1))).await.unwrap();
    let error = store
        .insert(&consignment("dup", "o", at(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::AlreadyExists(ref id) if id == "dup"),
        "{error:?}"
    );
}

async fn owners_see_only_their_own_newest_first(store: impl ConsignmentStore) {
    for (id, owner, time) in [
        ("a1", "alice", 1),
        ("b1", "bob", 2),
        ("a2", "alice", 3),
        ("a3", "alice", 5),
    ] {
        store
            .insert(&consignment(id, owner, at(time)))
            .await
            .unwrap();
    }
    assert_eq!(
        ids(&store.list_by_owner("alice", None, 10).await.unwrap()),
        ["a3", "a2", "a1"]
    );
    assert_eq!(
        ids(&store.list_by_owner("bob", None, 10).await.unwrap()),
        ["b1"]
    );
    assert!(
        store
            .list_by_owner("carol", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A listing read row by row can be stopped: the caller gets what it took,
/// and the rows it left unread never reach the next query on the pool.
async fn a_visit_stopped_early_leaves_the_store_usable(store: impl ConsignmentStore) {
    for n in 0..30 {
        store
            .insert(&consignment(&format!("v{n:02}"), "o", at(n)))
            .await
            .unwrap();
    }
    // More stopped visits than the pool has connections, so every
    // connection has been handed back with rows unread at least once.
    for round in 0..25 {
        let mut taken = Vec::new();
        store
            .visit_by_owner("o", None, 30, |consignment| {
                taken.push(consignment.id);
                if taken.len() == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await
            .unwrap();
        assert_eq!(taken, ["v29", "v28", "v27"], "round {round}");
    }
    let all = store.list_by_owner("o", None, 100).await.unwrap();
    assert_eq!(all.len(), 30);
    assert_eq!(all[0].id, "v29");
    assert_eq!(all[29].id, "v00");
}

async fn pages_resume_after_the_cursor_even_at_equal_times(store: impl ConsignmentStore) {
    // Three at the same instant: the id breaks the tie, greater first.
    for (id, time) in [("x", 10), ("m", 10), ("b", 10), ("old", 1), ("new", 20)] {
        store.insert(&consignment(id, "o", at(time))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store.list_by_owner("o", after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        after = Some(Cursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        seen.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(seen, ["new", "x", "m", "b", "old"]);
}

async fn only_confirmed_consignments_are_listed(store: impl ConsignmentStore) {
    for (id, state) in [
        ("p", State::Pending),
        ("c", State::Confirmed),
        ("x", State::Cancelling),
        ("z", State::Cancelled),
    ] {
        let mut stored = consignment(id, "owner-1", at(i64::from(id.as_bytes()[0])));
        stored.state = state;
        store.insert(&stored).await.unwrap();
    }
    let listed = store.list_by_owner("owner-1", None, 10).await.unwrap();
    assert_eq!(ids(&listed), ["c"]);
    let got = store
        .get("x")
        .await
        .unwrap()
        .expect("any state is got by id");
    assert_eq!(got.state, State::Cancelling);
    assert_eq!(store.get("missing").await.unwrap(), None);
}

/// Whether `store` moved consignment `id` from `from` to `to`.
async fn moved(store: &impl ConsignmentStore, id: &str, from: State, to: State) -> bool {
    store.transition(id, from, to).await.unwrap()
}

async fn transitions_move_only_from_the_expected_state(store: impl ConsignmentStore) {
    let mut stored = consignment("a", "owner-1", at(1));
    stored.state = State::Pending;
    store.insert(&stored).await.unwrap();
    assert!(!moved(&store, "a", State::Confirmed, State::Cancelling).await);
    assert!(moved(&store, "a", State::Pending, State::Confirmed).await);
    assert!(
        !moved(&store, "a", State::Pending, State::Cancelling).await,
        "a second mover from pending finds it moved"
    );
    assert_eq!(
        store.get("a").await.unwrap().unwrap().state,
        State::Confirmed
    );
    assert_eq!(
        ids(&store.list_by_owner("owner-1", None, 10).await.unwrap()),
        ["a"]
    );
    assert!(!moved(&store, "missing", State::Pending, State::Confirmed).await);
}

async fn unsettled_finds_old_consignments_of_a_state_oldest_first(store: impl ConsignmentStore) {
    for (id, micros, state) in [
        ("old-2", 20, State::Pending),
        ("old-1", 10, State::Pending),
        ("young", 500, State::Pending),
        ("done", 5, State::Confirmed),
        ("undo", 7, State::Cancelling),
    ] {
        let mut stored = consignment(id, "owner-1", at(micros));
        stored.state = state;
        store.insert(&stored).await.unwrap();
    }
    let pending = store.unsettled(State::Pending, at(100), 10).await.unwrap();
    assert_eq!(pending, ["old-1", "old-2"]);
    assert_eq!(
        store.unsettled(State::Pending, at(100), 1).await.unwrap(),
        ["old-1"]
    );
    let cancelling = store
        .unsettled(State::Cancelling, at(100), 10)
        .await
        .unwrap();
    assert_eq!(cancelling, ["undo"]);
}

/// `consignment(id, owner, …)` created with idempotency key `key`, pending.
fn keyed(id: &str, owner: &str, key: &str) -> Consignment {
    Consignment {
        state: State::Pending,
        idempotency: Some(Idempotency {
            key: IdempotencyKey::parse(key).unwrap(),
            fingerprint: format!("fingerprint-of-{id}"),
        }),
        ..consignment(id, owner, at(7))
    }
}

/// One consignment per owner and idempotency key (a unique index), found by
/// both; a placing that failed (pending → cancelling) frees the key, a
/// cancel of a confirmed one does not.
async fn one_consignment_per_owner_and_key(store: impl ConsignmentStore) {
    let key = IdempotencyKey::parse("order-1").unwrap();
    let first = keyed("k1", "alice", "order-1");
    store.insert(&first).await.unwrap();
    assert_eq!(
        store.find_by_key("alice", &key).await.unwrap(),
        Some(first.clone()),
        "read back whole, key and fingerprint included"
    );
    let error = store
        .insert(&keyed("k2", "alice", "order-1"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::KeyTaken), "{error:?}");
    assert!(store.get("k2").await.unwrap().is_none());
    // Keys are per owner; consignments without one never clash.
    store.insert(&keyed("k3", "bob", "order-1")).await.unwrap();
    store
        .insert(&consignment("n1", "alice", at(8)))
        .await
        .unwrap();
    store
        .insert(&consignment("n2", "alice", at(9)))
        .await
        .unwrap();
    assert!(store.find_by_key("carol", &key).await.unwrap().is_none());

    // Its placing failed: the key is free for a retry to place anew.
    assert!(moved(&store, "k1", State::Pending, State::Cancelling).await);
    assert!(store.find_by_key("alice", &key).await.unwrap().is_none());
    let retry = keyed("k4", "alice", "order-1");
    store.insert(&retry).await.unwrap();
    assert_eq!(store.find_by_key("alice", &key).await.unwrap(), Some(retry));

    // A confirmed one cancelled keeps its key: the key was used.
    assert!(moved(&store, "k4", State::Pending, State::Confirmed).await);
    assert!(moved(&store, "k4", State::Confirmed, State::Cancelling).await);
    let kept = store.find_by_key("alice", &key).await.unwrap().unwrap();
    assert_eq!((kept.id.as_str(), kept.state), ("k4", State::Cancelling));
}

/// Writes made at the same time (which the PostgreSQL store sends as one
/// statement) are each answered as they would have been alone: one of
/// several inserts with an id or an owner's key stores, the others are told
/// why not; one of several moves of a consignment moves it.
async fn concurrent_writes_are_each_answered_as_alone(store: Store) {
    let insert = |consignment: Consignment| {
        let store = store.clone();
        tokio::spawn(async move { store.insert(&consignment).await })
    };
    let mut fresh = Vec::new();
    for n in 0..40 {
        fresh.push(insert(Consignment {
            state: State::Pending,
            ..consignment(&format!("c{n}"), "o", at(n))
        }));
    }
    let same_id: Vec<_> = (0..5)
        .map(|n| insert(consignment("twin", "o", at(100 + n))))
        .collect();
    let same_key: Vec<_> = (0..5)
        .map(|n| insert(keyed(&format!("k{n}"), "o", "order-9")))
        .collect();
    for task in fresh {
        task.await.unwrap().unwrap();
    }
    let mut stored = 0;
    for task in same_id {
        match task.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::AlreadyExists(id)) => assert_eq!(id, "twin"),
            Err(error) => panic!("{error:?}"),
        }
    }
    assert_eq!(stored, 1, "one consignment per id");
    stored = 0;
    for task in same_key {
        match task.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::KeyTaken) => {}
            Err(error) => panic!("{error:?}"),
        }
    }
    assert_eq!(stored, 1, "one consignment per owner and key");

    let moves: Vec<_> = (0..40)
        .chain(0..10)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transition(&format!("c{n}"), State::Pending, State::Confirmed)
                    .await
            })
        })
        .collect();
    let mut moved = 0;
    for task in moves {
        moved += u32::from(task.await.unwrap().unwrap());
    }
    assert_eq!(moved, 40, "each moved once");
    let listed = store.list_by_owner("o", None, 100).await.unwrap();
    assert_eq!(listed.len(), 41, "the 40 moved and the twin");
    assert_eq!(
        store.get("c7").await.unwrap().unwrap(),
        Consignment {
            state: State::Confirmed,
            ..consignment("c7", "o", at(7))
        },
        "stored whole"
    );
}

async fn preparing_twice_is_fine_and_ping_answers(store: impl ConsignmentStore) {
    store.prepare().await.unwrap();
    store.ping().await.unwrap();
}

// ---- each store --------------------------------------------------------------

/// The store at `url`, opened and prepared, with test logging on.
async fn prepared(url: &SecretUrl) -> Store {
    init_test_logging();
    let store = Store::open(url, TIMEOUT, NAME).await.unwrap();
    store.prepare().await.unwrap();
    store
}

async fn postgres_store() -> Store {
    let store = prepared(&fresh_postgres_database("consignment_contract").await).await;
    assert!(matches!(store, Store::Postgres(_)));
    store
}

async fn mongo_store() -> Store {
    let store = prepared(&fresh_mongodb_database("consignment_contract")).await;
    assert!(matches!(store, Store::Mongo(_)));
    store
}

store_contract!(
    postgres: postgres_store,
    mongodb: mongo_store,
    cases: [
    only_confirmed_consignments_are_listed,
    transitions_move_only_from_the_expected_state,
    unsettled_finds_old_consignments_of_a_state_oldest_first,
    inserted_consignment_reads_back_whole,
    a_taken_id_is_already_exists,
    one_consignment_per_owner_and_key,
    owners_see_only_their_own_newest_first,
    pages_resume_after_the_cursor_even_at_equal_times,
    a_visit_stopped_early_leaves_the_store_usable,
    preparing_twice_is_fine_and_ping_answers,
    concurrent_writes_are_each_answered_as_alone,
    ]
);

/// MongoDB only: a page of an owner's consignments is read through the
/// listing index, never by scanning the collection (or the `_id` index).
#[tokio::test]
#[ignore = "MongoDB store: needs TEST_MONGODB_URL; make test includes it"]
async fn mongodb_listing_is_answered_from_the_owner_index() {
    use consignment_service::store::mongo::{LISTING_INDEX, listing_query};

    let url = fresh_mongodb_database("consignment_explain");
    let store = prepared(&url).await;
    for n in 0..200 {
        let owner = format!("owner-{}", n % 20);
        store
            .insert(&consignment(&format!("c{n:03}"), &owner, at(n)))
            .await
            .unwrap();
    }
    let cursor = Cursor {
        created_at: at(150),
        id: "c150".into(),
    };
    for after in [None, Some(&cursor)] {
        let (filter, sort) = listing_query("owner-7", after);
        shippy_testkit::mongodb_query_plan(&url, "consignments", filter, sort, 50)
            .await
            .assert_scans(LISTING_INDEX, &format!("the listing (after {after:?})"));
    }
}

/// A database nobody answers for is `Unavailable` (what callers retry and
/// report as `UNAVAILABLE`), not some other failure.
async fn an_unreachable_database_is_unavailable(url: SecretUrl) {
    let nowhere = shippy_testkit::ClosedPort::new();
    let url = shippy_testkit::with_socket_addr(&url, nowhere.address);
    let store = Store::open(&url, Duration::from_millis(500), NAME)
        .await
        .unwrap();
    let error = store.ping().await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = store
        .insert(&consignment("x", "o", at(1)))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable() {
    init_test_logging();
    an_unreachable_database_is_unavailable(fresh_postgres_database("unreachable").await).await;
}

#[tokio::test]
#[ignore = "MongoDB store: needs TEST_MONGODB_URL; make test includes it"]
async fn mongodb_unreachable_is_unavailable() {
    init_test_logging();
    an_unreachable_database_is_unavailable(fresh_mongodb_database("unreachable")).await;
}

/// PostgreSQL only: pooled connections are not pinged before use (that
/// cost every query a second round trip), so connections the server has
/// dropped are found by the next query on each: it fails `Unavailable`, the
/// connection leaves the pool, and the store answers again — within one
/// failure per dropped connection.
#[tokio::test]
async fn postgres_connections_the_server_dropped_leave_the_pool() {
    use sqlx::Connection as _;

    let url = fresh_postgres_database("consignment_dropped").await;
    let store = prepared(&url).await;
    // Several connections in the pool at once.
    let listings: Vec<_> = (0..8).map(|_| store.list_by_owner("o", None, 10)).collect();
    for listed in futures::future::join_all(listings).await {
        listed.unwrap();
    }
    let mut admin = sqlx::PgConnection::connect(url.expose()).await.unwrap();
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS terminated",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(dropped >= 1, "the store held no connection");
    let mut failures = 0;
    let mut answered = 0;
    for _ in 0..40 {
        match store.list_by_owner("o", None, 10).await {
            Ok(_) => answered += 1,
            Err(StoreError::Unavailable(_)) => failures += 1,
            Err(other) => panic!("a dropped connection should be Unavailable: {other:?}"),
        }
    }
    assert!(
        failures <= dropped,
        "{failures} failures for {dropped} dropped connections: broken ones stay in the pool"
    );
    assert_eq!(answered + failures, 40);
    store.ping().await.unwrap();
}

/// PostgreSQL only: a row that breaks the rules (here, no containers — the
/// table cannot say that) is refused as corrupt when read, never handed on.
#[tokio::test]
async fn postgres_rows_are_parsed_again_when_read() {
    use sqlx::Connection as _;

    let url = fresh_postgres_database("consignment_reparse").await;
    let store = prepared(&url).await;
    let mut connection = sqlx::PgConnection::connect(url.expose()).await.unwrap();
    sqlx::query(
        "INSERT INTO consignments (id, owner_id, description, weight, vessel_id, containers, created_at, state) \
         VALUES ('bad', 'o', 'Empty', 5, 'vessel001', '[]', now(), 'confirmed')",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    let error = store.list_by_owner("o", None, 10).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(message) if message.contains("at least one container")),
        "{error:?}"
    );
    assert!(matches!(
        store.get("bad").await,
        Err(StoreError::Corrupt(_))
    ));
    // The recovery sweep reads ids only: an unreadable row does not hide the
    // others from it.
    sqlx::query("UPDATE consignments SET state = 'pending'")
        .execute(&mut connection)
        .await
        .unwrap();
    let mut good = consignment("good", "o", at(1));
    good.state = State::Pending;
    store.insert(&good).await.unwrap();
    // Later than both: now (the bad row) and `at(1)` (the good one).
    let mut found = store
        .unsettled(State::Pending, at(1_000_000), 10)
        .await
        .unwrap();
    found.sort();
    assert_eq!(found, ["bad", "good"]);
}
