//! `ReserveBatch` and `ConfirmBatch` over gRPC: each item answered with the
//! status, message and metadata its own `Reserve` or `Confirm` would have
//! had; the call refused whole only as a whole.

use shippy_harness::refused;
use shippy_proto::vessel::{
    quota,
    v1::{BatchResponse, ConfirmBatchRequest, ReserveBatchRequest, ReserveRequest},
};
use tonic::{Code, Request};
use vessel_service::domain::AccountQuota;

use crate::api::{TestApp, as_service, reserve, room_of};

/// Each outcome as `(code, what it says)`: the vessel for a success, the
/// message (and the quota figures, if any) otherwise.
fn outcomes(response: tonic::Response<BatchResponse>) -> Vec<(Code, String)> {
    response
        .into_inner()
        .outcomes
        .into_iter()
        .map(|outcome| match outcome.reservation {
            Some(reservation) if outcome.code == 0 => (Code::Ok, reservation.vessel_id),
            _ => {
                let figures: Vec<&str> = [
                    quota::HELD_CONTAINERS,
                    quota::HELD_WEIGHT,
                    quota::MAX_CONTAINERS,
                    quota::MAX_WEIGHT,
                ]
                .iter()
                .filter_map(|key| outcome.metadata.get(*key).map(String::as_str))
                .collect();
                (
                    Code::from(outcome.code),
                    format!("{} {figures:?}", outcome.message),
                )
            }
        })
        .collect()
}

fn codes(answers: &[(Code, String)]) -> Vec<Code> {
    answers.iter().map(|(code, _)| *code).collect()
}

#[tokio::test]
async fn a_batch_answers_each_item_as_its_own_call_would() {
    // The default cap on containers; on weight one the fleet cannot reach.
    let app = TestApp::ready_with(AccountQuota {
        weight: 10_000_000,
        ..AccountQuota::DEFAULT
    })
    .await;
    let mut vessels = app.vessels();
    let other = |request: ReserveRequest| ReserveRequest {
        owner_id: "account-2".into(),
        ..request
    };
    let batch = ReserveBatchRequest {
        reservations: vec![
            reserve("first", 400, 150_000),
            reserve("second", 26, 1),
            other(reserve("huge", 1, 600_000)),
            reserve("", 1, 1),
            reserve("first", 400, 150_000),
            reserve("first", 1, 1),
        ],
    };
    let answers = outcomes(vessels.reserve_batch(as_service(batch)).await.unwrap());
    assert_eq!(
        codes(&answers),
        [
            Code::Ok,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::InvalidArgument,
            Code::Ok,
            Code::AlreadyExists,
        ],
        "{answers:#?}"
    );
    assert_eq!(answers[0].1, "vessel001");
    assert_eq!(answers[4].1, "vessel001", "the same reservation again");
    assert!(
        answers[1].1.contains("cap of 425 containers")
            && answers[1]
                .1
                .ends_with(r#"["400", "150000", "425", "10000000"]"#),
        "{}",
        answers[1].1
    );
    assert!(
        answers[2]
            .1
            .contains("no vessel has room left for 1 containers weighing 600000 kg"),
        "{}",
        answers[2].1
    );
    // Only the first took room, once.
    assert_eq!(room_of(&app, "vessel001").await.2, 400);

    let confirmations = ConfirmBatchRequest {
        reservation_ids: vec!["first".into(), "never".into(), String::new()],
    };
    let answers = outcomes(
        vessels
            .confirm_batch(as_service(confirmations))
            .await
            .unwrap(),
    );
    assert_eq!(
        codes(&answers),
        [Code::Ok, Code::NotFound, Code::InvalidArgument],
        "{answers:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_too_big_or_without_the_secret_is_refused_whole() {
    let app = TestApp::ready_with(AccountQuota::DEFAULT).await;
    let mut vessels = app.vessels();
    let too_many = ReserveBatchRequest {
        reservations: (0..257).map(|n| reserve(&format!("r{n}"), 1, 1)).collect(),
    };
    refused(
        vessels.reserve_batch(as_service(too_many)).await,
        Code::InvalidArgument,
        &["at most 256"],
    );
    let too_many = ConfirmBatchRequest {
        reservation_ids: vec!["x".into(); 257],
    };
    refused(
        vessels.confirm_batch(as_service(too_many)).await,
        Code::InvalidArgument,
        &[],
    );
    refused(
        vessels
            .reserve_batch(Request::new(ReserveBatchRequest {
                reservations: vec![reserve("r", 1, 1)],
            }))
            .await,
        Code::PermissionDenied,
        &[],
    );
    assert_eq!(room_of(&app, "vessel001").await.2, 0, "nothing taken");
    app.stop().await;
}
