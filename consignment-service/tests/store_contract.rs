//! The contract every consignment store must keep, run against each store:
//! PostgreSQL always (a fresh database per test), MongoDB when `MONGODB_URL`
//! is set (a fresh database per test). Without it the MongoDB cases show as
//! ignored; `make test` runs them with `--include-ignored` when it is set.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use consignment_service::{
    domain::{Consignment, Container},
    store::{After, ConsignmentStore, Store, StoreError},
};
use shippy_testkit::{fresh_postgres_database, init_test_logging, mongodb_url_or_say_skipped};

const TIMEOUT: Duration = Duration::from_secs(5);

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_800_000_000_000_000 + micros).unwrap()
}

fn consignment(id: &str, owner: &str, created_at: DateTime<Utc>) -> Consignment {
    Consignment {
        id: id.into(),
        owner_id: owner.into(),
        description: format!("Consignment {id}"),
        weight: 55_000,
        containers: vec![
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
        ],
        vessel_id: "vessel001".into(),
        created_at,
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

async fn pages_resume_after_the_cursor_even_at_equal_times(store: impl ConsignmentStore) {
    // Three at the same instant: the id breaks the tie, greater first.
    for (id, time) in [("x", 10), ("m", 10), ("b", 10), ("old", 1), ("new", 20)] {
        store.insert(&consignment(id, "o", at(time))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<After> = None;
    loop {
        let page = store.list_by_owner("o", after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        after = Some(After {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        seen.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(seen, ["new", "x", "m", "b", "old"]);
}

async fn preparing_twice_is_fine_and_ping_answers(store: impl ConsignmentStore) {
    store.prepare().await.unwrap();
    store.ping().await.unwrap();
}

// ---- each store --------------------------------------------------------------

async fn postgres_store() -> Store {
    init_test_logging();
    let url = fresh_postgres_database("consignment_contract").await;
    let store = Store::open(&url, TIMEOUT).await.unwrap();
    assert!(matches!(store, Store::Postgres(_)));
    store.prepare().await.unwrap();
    store
}

async fn mongo_store(test: &str) -> Option<Store> {
    init_test_logging();
    let url: shippy_service::settings::SecretUrl = mongodb_url_or_say_skipped(test)?
        .parse()
        .expect("MONGODB_URL is a valid URL");
    let url = url.with_path(&format!(
        "/consignment_contract_{}",
        uuid::Uuid::new_v4().simple()
    ));
    let store = Store::open(&url, TIMEOUT).await.unwrap();
    assert!(matches!(store, Store::Mongo(_)));
    store.prepare().await.unwrap();
    Some(store)
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::postgres_store().await).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test]
                #[ignore = "MongoDB store: runs when MONGODB_URL is set (make test passes --include-ignored then)"]
                async fn $case() {
                    if let Some(store) = super::mongo_store(stringify!($case)).await {
                        super::$case(store).await;
                    }
                }
            )*
        }
    };
}

contract!(
    inserted_consignment_reads_back_whole,
    a_taken_id_is_already_exists,
    owners_see_only_their_own_newest_first,
    pages_resume_after_the_cursor_even_at_equal_times,
    preparing_twice_is_fine_and_ping_answers,
);
