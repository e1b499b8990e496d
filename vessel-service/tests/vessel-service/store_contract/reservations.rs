//! The contract's cases on reservations: taking room on the smallest
//! vessel that still has it, retries, races, confirming, giving back,
//! expiry and the per-owner cap.

use std::time::Duration;

use vessel_service::{
    domain::{AccountQuota, Held, Reserved, Vessel},
    fleet,
    store::{Store, VesselStore},
};

use super::{HOLD, NO_CAP, found_id, held, owner, reserve_as, rid, room, spec, vessel};

/// Reserves and answers the vessel's id (`None`: no room).
async fn reserve_on(
    store: &impl VesselStore,
    id: &str,
    capacity: i32,
    weight: i32,
) -> Option<String> {
    reserve_as(
        store,
        id,
        &format!("owner-of-{id}"),
        spec(capacity, weight),
        NO_CAP,
    )
    .await
    .expect("reserve")
    .into_held()
    .map(|reservation| reservation.vessel_id.as_str().to_owned())
}

pub(super) async fn reservations_take_room_on_the_smallest_vessel_that_still_has_it(
    store: impl VesselStore,
) {
    store.insert(&vessel("a", 10, 100)).await.unwrap();
    store.insert(&vessel("b", 20, 200)).await.unwrap();
    assert_eq!(reserve_on(&store, "r1", 6, 10).await.as_deref(), Some("a"));
    assert_eq!(room(&store, "a").await, (4, 90));
    // a has 4 containers left: 6 more go to b.
    assert_eq!(found_id(&store, 6, 10).await.as_deref(), Some("b"));
    assert_eq!(reserve_on(&store, "r2", 6, 10).await.as_deref(), Some("b"));
    // Exactly what is left of a still fits a.
    assert_eq!(reserve_on(&store, "r3", 4, 90).await.as_deref(), Some("a"));
    assert_eq!(room(&store, "a").await, (0, 0));
    assert_eq!(reserve_on(&store, "r4", 1, 1).await.as_deref(), Some("b"));
    assert_eq!(room(&store, "b").await, (13, 189));
    // Nothing has 14 containers left; the failed attempt takes nothing.
    assert_eq!(reserve_on(&store, "r5", 14, 1).await, None);
    assert_eq!(found_id(&store, 14, 1).await, None);
    assert_eq!(room(&store, "b").await, (13, 189));
    // An unavailable vessel is never reserved.
    store
        .insert(&Vessel {
            available: false,
            ..vessel("c", 1, 1)
        })
        .await
        .unwrap();
    assert_eq!(reserve_on(&store, "r6", 1, 1).await.as_deref(), Some("b"));
}

pub(super) async fn reserving_again_with_the_same_id_takes_nothing_more(store: impl VesselStore) {
    store.insert(&vessel("a", 10, 100)).await.unwrap();
    let first = held(&store, "r1", spec(3, 30), HOLD, NO_CAP).await;
    let again = held(&store, "r1", spec(3, 30), HOLD, NO_CAP).await;
    assert_eq!(first, again);
    assert_eq!(room(&store, "a").await, (7, 70));
    assert!(first.expires_at.is_some(), "held until confirmed");
}

pub(super) async fn concurrent_reservers_never_overbook_a_vessel(
    store: impl VesselStore + Clone + 'static,
) {
    // The seed fleet takes 13 of the sample consignment (3 containers,
    // 55 000 kg): 1 on vessel002, 3 on vessel001, 9 on vessel003.
    fleet::seed(&store).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { reserve_on(&store, &format!("c{n}"), 3, 55_000).await })
        })
        .collect();
    let mut per_vessel = std::collections::BTreeMap::<String, i32>::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Some(vessel) => *per_vessel.entry(vessel).or_default() += 1,
            None => refused += 1,
        }
    }
    let expected: std::collections::BTreeMap<String, i32> = [
        ("vessel001".into(), 3),
        ("vessel002".into(), 1),
        ("vessel003".into(), 9),
    ]
    .into();
    assert_eq!(per_vessel, expected, "{refused} refused");
    assert_eq!(refused, 27);
    for (id, capacity, weight) in [
        ("vessel001", 500, 200_000),
        ("vessel002", 200, 100_000),
        ("vessel003", 1_000, 500_000),
    ] {
        let taken = expected[id];
        assert_eq!(
            room(&store, id).await,
            (capacity - 3 * taken, weight - 55_000 * taken),
            "{id}"
        );
    }
}

pub(super) async fn concurrent_reservers_with_one_id_take_the_room_once(
    store: impl VesselStore + Clone + 'static,
) {
    store.insert(&vessel("a", 100, 1000)).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { reserve_as(&store, "same", "o", spec(2, 10), NO_CAP).await })
        })
        .collect();
    for task in tasks {
        let reservation = task
            .await
            .unwrap()
            .expect("reserve")
            .into_held()
            .expect("room");
        assert_eq!(reservation.vessel_id.as_str(), "a");
    }
    assert_eq!(room(&store, "a").await, (98, 990));
}

pub(super) async fn release_gives_the_room_back_once(store: impl VesselStore) {
    store.insert(&vessel("a", 10, 100)).await.unwrap();
    reserve_on(&store, "r1", 4, 40).await.unwrap();
    store.confirm(&rid("r1")).await.unwrap().expect("confirmed");
    let released = store
        .release(&rid("r1"), false)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(
        (
            released.taken.capacity.get(),
            released.taken.max_weight.get()
        ),
        (4, 40)
    );
    assert_eq!(room(&store, "a").await, (10, 100));
    assert_eq!(
        store.release(&rid("r1"), false).await.unwrap(),
        None,
        "nothing to give back twice"
    );
    assert_eq!(room(&store, "a").await, (10, 100));
    assert_eq!(
        store.confirm(&rid("r1")).await.unwrap(),
        None,
        "a released hold cannot be confirmed"
    );
    assert_eq!(store.release(&rid("never"), false).await.unwrap(), None);
}

pub(super) async fn release_only_if_held_leaves_confirmed_room_taken(store: impl VesselStore) {
    store.insert(&vessel("a", 10, 100)).await.unwrap();
    reserve_on(&store, "held", 1, 10).await.unwrap();
    reserve_on(&store, "kept", 2, 20).await.unwrap();
    store
        .confirm(&rid("kept"))
        .await
        .unwrap()
        .expect("confirmed");
    assert_eq!(store.release(&rid("kept"), true).await.unwrap(), None);
    assert_eq!(
        room(&store, "a").await,
        (7, 70),
        "the confirmed room stays taken"
    );
    assert!(store.release(&rid("held"), true).await.unwrap().is_some());
    assert_eq!(room(&store, "a").await, (8, 80));
    assert!(store.release(&rid("kept"), false).await.unwrap().is_some());
    assert_eq!(room(&store, "a").await, (10, 100));
}

pub(super) async fn held_reservations_expire_and_confirmed_ones_stay(
    store: impl VesselStore + Clone + 'static,
) {
    store.insert(&vessel("a", 10, 100)).await.unwrap();
    let short = Duration::from_millis(300);
    for id in ["held", "kept", "late"] {
        held(&store, id, spec(2, 20), short, NO_CAP).await;
    }
    let kept = store
        .confirm(&rid("kept"))
        .await
        .unwrap()
        .expect("confirmed in time");
    assert_eq!(kept.expires_at, None);
    assert_eq!(store.expire().await.unwrap(), 0, "nothing is due yet");
    assert_eq!(room(&store, "a").await, (4, 40));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Past its time but not yet swept: too late to confirm all the same.
    assert_eq!(store.confirm(&rid("late")).await.unwrap(), None);
    // Two sweepers at once give each hold's room back once.
    let (one, two) = tokio::join!(store.expire(), store.expire());
    assert_eq!(one.unwrap() + two.unwrap(), 2);
    assert_eq!(
        room(&store, "a").await,
        (8, 80),
        "the confirmed room stays taken"
    );
    assert_eq!(
        store.release(&rid("held"), false).await.unwrap(),
        None,
        "already given back"
    );
    assert!(store.release(&rid("kept"), false).await.unwrap().is_some());
    assert_eq!(room(&store, "a").await, (10, 100));
}

/// One owner's held and confirmed room never passes the cap, however many
/// of their reservations race; other owners are not held back; a released
/// reservation's room counts no more; a retry of a held id is answered
/// whatever the cap says.
pub(super) async fn an_owners_cap_holds_under_concurrency_and_frees_on_release(store: Store) {
    store
        .insert(&vessel("big", 1_000, 1_000_000))
        .await
        .unwrap();
    let cap = AccountQuota {
        containers: 10,
        weight: 1_000,
    };
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                reserve_as(&store, &format!("q{n}"), "greedy", spec(1, 100), cap).await
            })
        })
        .collect();
    let (mut held, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap().expect("reserve") {
            Reserved::Held(reservation) => held.push(reservation),
            Reserved::OverQuota(Held { containers, weight }) => {
                assert!(
                    containers + 1 > 10 || weight + 100 > 1_000,
                    "{containers} {weight}"
                );
                refused += 1;
            }
            Reserved::NoRoom => panic!("the vessel has room"),
        }
    }
    assert_eq!(
        (held.len(), refused),
        (10, 10),
        "exactly the cap, never more"
    );
    assert_eq!(room(&store, "big").await, (990, 999_000));
    // A confirmed reservation counts as much as a held one.
    store.confirm(&held[0].id).await.unwrap().unwrap();
    assert!(matches!(
        reserve_as(&store, "one-more", "greedy", spec(1, 1), cap)
            .await
            .unwrap(),
        Reserved::OverQuota(Held {
            containers: 10,
            weight: 1_000
        })
    ));
    // A retry of an id that holds room is answered, not refused.
    let again = store
        .reserve(&held[1].id, &owner("greedy"), spec(1, 100), HOLD, cap)
        .await
        .unwrap();
    assert_eq!(again, Reserved::Held(held[1].clone()));
    // Someone else is not held back by it.
    assert!(matches!(
        reserve_as(&store, "modest", "modest", spec(1, 1), cap)
            .await
            .unwrap(),
        Reserved::Held(_)
    ));
    // Released room (confirmed or not) counts no more.
    store.release(&held[0].id, false).await.unwrap().unwrap();
    assert!(matches!(
        reserve_as(&store, "after-release", "greedy", spec(1, 100), cap)
            .await
            .unwrap(),
        Reserved::Held(_)
    ));
}
