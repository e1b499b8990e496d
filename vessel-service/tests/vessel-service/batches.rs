//! The store contract for batches (`reserve_many`, `confirm_many`) and for
//! what an account holds, run against each store as the rest of the
//! contract is: every item of a batch is answered as it would have been
//! alone, and batches racing each other and single calls never overbook a
//! vessel nor pass a cap.

use std::{collections::BTreeMap, time::Duration};

use shippy_testkit::store_contract;
use vessel_service::{
    domain::{AccountQuota, Held, Reserved},
    fleet,
    store::{Store, VesselStore, Wanted},
};

use crate::store_contract::{
    HOLD, NO_CAP, held, mongo_store, owner, postgres_store, reserve_as, rid, room, spec, vessel,
};

fn wanted(id: &str, owner_id: &str, capacity: i32, weight: i32) -> Wanted {
    Wanted {
        id: rid(id),
        owner: owner(owner_id),
        spec: spec(capacity, weight),
    }
}

/// `items` reserved in one batch under `cap`: each answer as [`outcome`].
async fn outcomes(store: &Store, items: &[Wanted], cap: AccountQuota) -> Vec<String> {
    let answers = store.reserve_many(items, HOLD, cap).await;
    answers
        .into_iter()
        .map(|answer| outcome(&answer.expect("reserve")))
        .collect()
}

/// The vessel an answer holds room on; `NoRoom` and `OverQuota` as text.
fn outcome(reserved: &Reserved) -> String {
    match reserved {
        Reserved::Held(reservation) => reservation.vessel_id.as_str().to_owned(),
        Reserved::NoRoom => "no room".into(),
        Reserved::OverQuota(Held { containers, weight }) => {
            format!("over quota at {containers}/{weight}")
        }
    }
}

async fn a_batch_is_answered_item_by_item_as_each_would_be_alone(store: Store) {
    store.insert(&vessel("small", 10, 100)).await.unwrap();
    store.insert(&vessel("large", 100, 1000)).await.unwrap();
    let cap = AccountQuota {
        containers: 12,
        weight: 100_000,
    };
    let before = reserve_as(&store, "before", "p", spec(1, 1), cap)
        .await
        .unwrap();
    let batch = [
        wanted("one", "o", 4, 40),
        wanted("two", "o", 4, 40),
        // o holds 8 of its 12 containers: 5 more would pass the cap.
        wanted("three", "o", 5, 50),
        wanted("four", "p", 5, 50),
        // No vessel carries 5 t, though the cap would allow it.
        wanted("huge", "p", 1, 5_000),
        // Sent twice in one batch, and a retry of an earlier call.
        wanted("one", "o", 4, 40),
        wanted("before", "p", 1, 1),
    ];
    let answers: Vec<String> = outcomes(&store, &batch, cap).await;
    assert_eq!(
        answers,
        [
            "small",
            "small",
            "over quota at 8/80",
            "large",
            "no room",
            "small",
            "small"
        ]
    );
    assert_eq!(store.reserve_many(&[], HOLD, cap).await.len(), 0);
    let again = reserve_as(&store, "before", "p", spec(1, 1), cap)
        .await
        .unwrap();
    assert_eq!(again, before, "the earlier reservation, untouched");
    // 4 + 4 + 1 on small, 5 on large: nothing twice, nothing refused taken.
    assert_eq!(room(&store, "small").await, (1, 19));
    assert_eq!(room(&store, "large").await, (95, 950));
}

async fn batches_and_single_reservations_racing_never_overbook_or_pass_a_cap(store: Store) {
    // The seed fleet takes 13 of the sample consignment (3 containers,
    // 55 000 kg): 1 on vessel002, 3 on vessel001, 9 on vessel003.
    fleet::seed(&store).await.unwrap();
    let cap = AccountQuota {
        containers: 3 * 10,
        weight: NO_CAP.weight,
    };
    // 40 reservations of one account: four batches of 8 and 8 alone, at once.
    let mut tasks = Vec::new();
    for batch in 0..4 {
        let store = store.clone();
        let items: Vec<Wanted> = (0..8)
            .map(|n| wanted(&format!("b{batch}-{n}"), "greedy", 3, 55_000))
            .collect();
        tasks.push(tokio::spawn(
            async move { outcomes(&store, &items, cap).await },
        ));
    }
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let answer = reserve_as(&store, &format!("s{n}"), "greedy", spec(3, 55_000), cap)
                .await
                .expect("reserve");
            vec![outcome(&answer)]
        }));
    }
    let mut tally = BTreeMap::<String, i32>::new();
    for task in tasks {
        for answer in task.await.unwrap() {
            let kind = if answer.starts_with("over quota") {
                "over quota".to_owned()
            } else {
                answer
            };
            *tally.entry(kind).or_default() += 1;
        }
    }
    // The cap (10) binds before the fleet (13) does: which vessels the ten
    // landed on depends on the order they came in, never more than fit.
    let held: i32 = tally
        .iter()
        .filter(|(kind, _)| kind.starts_with("vessel"))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(held, 10, "exactly the cap: {tally:?}");
    assert_eq!(tally.get("over quota"), Some(&30), "{tally:?}");
    let mut taken = 0;
    for (id, capacity, weight) in [
        ("vessel001", 500, 200_000),
        ("vessel002", 200, 100_000),
        ("vessel003", 1_000, 500_000),
    ] {
        let (left, left_weight) = room(&store, id).await;
        let on_it = tally.get(id).copied().unwrap_or(0);
        assert_eq!(
            (left, left_weight),
            (capacity - 3 * on_it, weight - 55_000 * on_it)
        );
        assert!(left_weight >= 0, "{id} overbooked");
        taken += on_it;
    }
    assert_eq!(taken, 10);
    // Another account still takes what is left: the fleet's 13 in all.
    let items: Vec<Wanted> = (0..5)
        .map(|n| wanted(&format!("other-{n}"), "other", 3, 55_000))
        .collect();
    let answers: Vec<String> = outcomes(&store, &items, NO_CAP).await;
    assert_eq!(
        answers
            .iter()
            .filter(|answer| answer.starts_with("vessel"))
            .count(),
        3,
        "{answers:?}"
    );
}

async fn confirm_many_answers_each_id_as_confirm_would(store: Store) {
    store.insert(&vessel("a", 10, 100)).await.unwrap();
    let short = Duration::from_millis(300);
    for (id, ttl) in [("held", HOLD), ("kept", HOLD), ("late", short)] {
        held(&store, id, spec(1, 1), ttl, NO_CAP).await;
    }
    store.confirm(&rid("kept")).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = [
        rid("held"),
        rid("never"),
        rid("kept"),
        rid("late"),
        rid("held"),
    ];
    let answers: Vec<Option<(String, bool)>> = store
        .confirm_many(&ids)
        .await
        .into_iter()
        .map(|answer| {
            answer.expect("confirm").map(|reservation| {
                (
                    reservation.id.as_str().to_owned(),
                    reservation.expires_at.is_none(),
                )
            })
        })
        .collect();
    assert_eq!(
        answers,
        [
            Some(("held".into(), true)),
            None,
            Some(("kept".into(), true)),
            None,
            Some(("held".into(), true)),
        ]
    );
    assert!(store.confirm_many(&[]).await.is_empty());
    // Confirmed room outlives the sweep; the late one's comes back.
    store.expire().await.unwrap();
    assert_eq!(room(&store, "a").await, (8, 98));
}

/// What an account holds falls when its holds expire, as it does when they
/// are released: the room counts against its cap no more.
async fn expired_holds_count_against_the_cap_no_more(store: Store) {
    store.insert(&vessel("a", 100, 1_000)).await.unwrap();
    let cap = AccountQuota {
        containers: 2,
        weight: 1_000,
    };
    let short = Duration::from_millis(200);
    for id in ["first", "second"] {
        held(&store, id, spec(1, 1), short, cap).await;
    }
    let full = reserve_as(&store, "third", "o", spec(1, 1), cap)
        .await
        .unwrap();
    assert_eq!(
        full,
        Reserved::OverQuota(Held {
            containers: 2,
            weight: 2
        })
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.expire().await.unwrap(), 2);
    let items = [wanted("third", "o", 1, 1), wanted("fourth", "o", 1, 1)];
    for answer in store.reserve_many(&items, HOLD, cap).await {
        assert!(matches!(answer.unwrap(), Reserved::Held(_)));
    }
    assert_eq!(room(&store, "a").await, (98, 998));
}

store_contract!(
    postgres: postgres_store,
    mongodb: mongo_store,
    cases: [
    a_batch_is_answered_item_by_item_as_each_would_be_alone,
    batches_and_single_reservations_racing_never_overbook_or_pass_a_cap,
    confirm_many_answers_each_id_as_confirm_would,
    expired_holds_count_against_the_cap_no_more,
    ]
);
