//! The checker's verdicts on small hand-made histories and observations.

use super::*;
use crate::view::{StoredReservation, StoredVessel};
use serde_json::json;

fn entry(time: f64, kind: Kind, op: &str, args: Value, result: Value) -> Entry {
    Entry {
        time,
        process: "c0".into(),
        seq: 0,
        kind,
        op: op.into(),
        via: "grpc".into(),
        args,
        result,
    }
}

fn consignment(id: &str, state: &str, key: &str) -> StoredConsignment {
    StoredConsignment {
        id: id.into(),
        owner_id: "u1".into(),
        vessel_id: "v1".into(),
        weight: 10,
        containers: 1,
        state: state.into(),
        key: Some(key.into()),
    }
}

/// One user `a@x` (id u1) with a welcome mail, vessel v1 (10 / 100)
/// carrying `consignments`' confirmed ones, listed to them.
fn observed(consignments: Vec<StoredConsignment>) -> Observed {
    let confirmed: Vec<&StoredConsignment> = consignments
        .iter()
        .filter(|c| c.state == "confirmed")
        .collect();
    let used: i64 = confirmed.iter().map(|c| c.containers).sum();
    let weight: i64 = confirmed.iter().map(|c| c.weight).sum();
    let reservations = confirmed
        .iter()
        .map(|c| StoredReservation {
            id: c.id.clone(),
            vessel_id: "v1".into(),
            capacity: c.containers,
            weight: c.weight,
            confirmed: true,
        })
        .collect();
    let listing = confirmed.iter().map(|c| c.id.clone()).collect();
    Observed {
        snapshot: Snapshot {
            fleet: Fleet {
                vessels: vec![StoredVessel {
                    id: "v1".into(),
                    capacity: 10,
                    max_weight: 100,
                    remaining_capacity: 10 - used,
                    remaining_weight: 100 - weight,
                }],
                reservations,
            },
            consignments,
            users: [("a@x".to_owned(), "u1".to_owned())].into(),
        },
        listings: [("a@x".to_owned(), Ok(listing))].into(),
        mails: vec![mail("a@x", Some("<1@x>"))],
        recovery: [("user-service".to_owned(), Some(0.1))].into(),
        recovery_limit: 30.0,
        ..Default::default()
    }
}

fn broken(verdicts: &[Verdict]) -> Vec<&'static str> {
    verdicts
        .iter()
        .filter(|v| !v.holds())
        .map(|v| v.name)
        .collect()
}

/// The verdicts on `history` when the store holds one consignment: `id`
/// in `state` with idempotency key `key`.
fn check_one(history: &[Entry], id: &str, state: &str, key: &str) -> Vec<Verdict> {
    check(history, &observed(vec![consignment(id, state, key)]))
}

/// `promise` is among the ones `verdicts` found broken.
fn assert_broken(verdicts: &[Verdict], promise: &str) {
    assert!(broken(verdicts).contains(&promise), "{verdicts:?}");
}

fn created(id: &str, key: &str) -> Vec<Entry> {
    let args = json!({ "email": "a@x", "key": key });
    vec![
        entry(1.0, Kind::Invoke, "create", args.clone(), Value::Null),
        entry(1.5, Kind::Ok, "create", args, json!({ "id": id })),
    ]
}

#[test]
fn a_consistent_run_holds_everything() {
    let history = created("k1-id", "k1");
    let verdicts = check_one(&history, "k1-id", "confirmed", "k1");
    assert!(broken(&verdicts).is_empty(), "{verdicts:?}");
}

#[test]
fn an_acknowledged_create_missing_from_a_later_listing_is_a_violation() {
    let mut history = created("k1-id", "k1");
    history.push(entry(
        2.0,
        Kind::Ok,
        "list",
        json!({ "email": "a@x" }),
        json!({ "ids": [] }),
    ));
    let verdicts = check_one(&history, "k1-id", "confirmed", "k1");
    assert_eq!(broken(&verdicts), ["acknowledged-creates"]);
    assert!(verdicts[0].counterexamples[0].contains("missing from their listing at 2.0 s"));
}

#[test]
fn an_indeterminate_create_left_pending_is_a_violation() {
    let args = json!({ "email": "a@x", "key": "k2" });
    let history = vec![entry(1.0, Kind::Indeterminate, "create", args, Value::Null)];
    let verdicts = check_one(&history, "k2-id", "pending", "k2");
    assert_broken(&verdicts, "failed-creates");
}

#[test]
fn a_cancelled_consignment_nobody_cancelled_is_a_violation() {
    let history = created("k1-id", "k1");
    let verdicts = check_one(&history, "k1-id", "cancelled", "k1");
    assert_broken(&verdicts, "acknowledged-creates");
}

fn mail(to: &str, id: Option<&str>) -> ReceivedMail {
    ReceivedMail {
        recipients: vec![to.into()],
        message_id: id.map(str::to_owned),
    }
}

#[test]
fn a_lost_or_doubled_mail_or_one_to_nobody_is_a_violation() {
    let mut lost = observed(Vec::new());
    lost.mails.clear();
    assert_eq!(broken(&check(&[], &lost)), ["welcome-mails"]);
    let mut doubled = observed(Vec::new());
    doubled.mails.push(mail("A@x", Some("<2@x>")));
    assert_eq!(broken(&check(&[], &doubled)), ["welcome-mails"]);
    let mut without_ids = observed(Vec::new());
    without_ids.mails = vec![mail("a@x", None), mail("a@x", None)];
    assert_eq!(broken(&check(&[], &without_ids)), ["welcome-mails"]);
    let mut stray = observed(Vec::new());
    stray.mails.push(mail("b@x", Some("<3@x>")));
    assert_eq!(broken(&check(&[], &stray)), ["welcome-mails"]);
}

#[test]
fn the_same_message_delivered_again_is_noted_not_a_violation() {
    let mut again = observed(Vec::new());
    again.mails.push(mail("a@x", Some("<1@x>")));
    let verdicts = check(&[], &again);
    assert!(broken(&verdicts).is_empty(), "{verdicts:?}");
    assert_eq!(verdicts[3].notes.len(), 1, "{verdicts:?}");
}

#[test]
fn a_mails_message_id_and_recipients_are_read() {
    let raw = "From: a@b\nMessage-ID: <e1@shippy.example>\nX-RcptTo: a@x\n\nbody\n";
    assert_eq!(
        ReceivedMail::parse(raw),
        mail("a@x", Some("<e1@shippy.example>"))
    );
}

#[test]
fn a_held_reservation_after_quiescence_is_a_violation() {
    let mut held = observed(Vec::new());
    held.snapshot.fleet.reservations.push(StoredReservation {
        id: "r".into(),
        vessel_id: "v1".into(),
        capacity: 1,
        weight: 1,
        confirmed: false,
    });
    held.snapshot.fleet.vessels[0].remaining_capacity = 9;
    held.snapshot.fleet.vessels[0].remaining_weight = 99;
    assert_eq!(broken(&check(&[], &held)), ["vessel-room"]);
}

#[test]
fn recipients_are_the_envelopes() {
    let mail = "From: a@b\nTo: X <x@y>\nX-Peer: ('127.0.0.1', 1)\nX-MailFrom: a@b\nX-RcptTo: Jo@Example.com, k@l\n\nX-RcptTo: not@header\n";
    assert_eq!(recipients(mail), ["jo@example.com", "k@l"]);
}
