//! Reservations over gRPC: the services' calls that take, confirm and give
//! back a vessel's room, and the per-account cap.

use std::time::Duration;

use shippy_harness::{refused, refuses_each};
use shippy_proto::vessel::v1::{ReserveRequest, vessel_service_client::VesselServiceClient};
use shippy_testkit::SERVICE_TOKEN;
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
use vessel_service::domain::AccountQuota;

use super::{
    RESERVATION_TTL, TestApp, as_service, bearer, reference, release, reserve, room_of, spec,
};

/// Asserts no reservation `id` is held: confirming it is `NOT_FOUND`.
async fn assert_nothing_held(vessels: &mut VesselServiceClient<Channel>, id: &str) {
    refused(
        vessels.confirm(as_service(reference(id))).await,
        Code::NotFound,
        &[],
    );
}

#[tokio::test]
async fn reservations_are_for_the_services_only() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    refused(
        vessels.reserve(reserve("r1", 1, 1)).await,
        Code::PermissionDenied,
        &[],
    );
    // An administrator's user token is not the services' secret.
    refused(
        vessels.release(bearer(release("r1"), &app.admin)).await,
        Code::PermissionDenied,
        &[],
    );
    let mut forged = Request::new(reference("r1"));
    forged.metadata_mut().insert(
        "x-service-token",
        MetadataValue::try_from("x".repeat(SERVICE_TOKEN.len())).unwrap(),
    );
    refused(vessels.confirm(forged).await, Code::PermissionDenied, &[]);
    assert_eq!(
        room_of(&app, "vessel002").await,
        (200, 100_000, 0, 0),
        "nothing taken"
    );
    app.stop().await;
}

#[tokio::test]
async fn reserve_confirm_and_release_move_a_vessels_room() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    let held = vessels
        .reserve(as_service(reserve("c-1", 3, 55_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.vessel_id, "vessel002");
    assert!(!held.confirmed && held.expires_at.is_some(), "{held:?}");
    assert_eq!(room_of(&app, "vessel002").await, (197, 45_000, 3, 55_000));
    // The same id again: the same reservation, nothing more taken.
    let again = vessels
        .reserve(as_service(reserve("c-1", 3, 55_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.vessel_id, "vessel002");
    assert_eq!(room_of(&app, "vessel002").await, (197, 45_000, 3, 55_000));
    refused(
        vessels.reserve(as_service(reserve("c-1", 4, 55_000))).await,
        Code::AlreadyExists,
        &[],
    );
    // FindAvailable counts what is left: vessel002 has 45 000 kg.
    let found = vessels
        .find_available(spec(1, 50_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.vessel.unwrap().id, "vessel001");

    let confirmed = vessels
        .confirm(as_service(reference("c-1")))
        .await
        .unwrap()
        .into_inner();
    assert!(confirmed.confirmed && confirmed.expires_at.is_none());
    // Confirmed room outlives the hold time.
    tokio::time::sleep(RESERVATION_TTL * 2).await;
    assert_eq!(room_of(&app, "vessel002").await, (197, 45_000, 3, 55_000));

    let released = vessels
        .release(as_service(release("c-1")))
        .await
        .unwrap()
        .into_inner();
    assert!(released.released);
    assert_eq!(room_of(&app, "vessel002").await, (200, 100_000, 0, 0));
    let twice = vessels
        .release(as_service(release("c-1")))
        .await
        .unwrap()
        .into_inner();
    assert!(!twice.released, "nothing to give back twice");
    assert_nothing_held(&mut vessels, "c-1").await;
    app.stop().await;
}

#[tokio::test]
async fn a_hold_never_confirmed_gives_its_room_back_after_the_ttl() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    vessels
        .reserve(as_service(reserve("abandoned", 10, 20_000)))
        .await
        .unwrap();
    assert_eq!(room_of(&app, "vessel002").await, (190, 80_000, 10, 20_000));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while room_of(&app, "vessel002").await != (200, 100_000, 0, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the room never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_nothing_held(&mut vessels, "abandoned").await;
    app.stop().await;
}

#[tokio::test]
async fn bad_reservations_are_refused_precisely_and_no_room_is_failed_precondition() {
    let app = TestApp::ready().await;
    let mut vessels = app.vessels();
    let cases = [
        (reserve("", 1, 1), "reservation_id"),
        (reserve("a\nb", 1, 1), "reservation_id"),
        (reserve(&"x".repeat(10_000), 1, 1), "reservation_id"),
        (reserve("ok", 0, 1), "capacity"),
        (
            ReserveRequest {
                reservation_id: "ok".into(),
                specification: None,
                owner_id: "account-1".into(),
            },
            "specification",
        ),
        (
            ReserveRequest {
                owner_id: String::new(),
                ..reserve("ok", 1, 1)
            },
            "owner_id",
        ),
    ];
    refuses_each(Code::InvalidArgument, cases, async |request| {
        vessels.reserve(as_service(request)).await
    })
    .await;
    refused(
        vessels.reserve(as_service(reserve("big", 1_001, 1))).await,
        Code::FailedPrecondition,
        &["1001 containers"],
    );
    assert_eq!(room_of(&app, "vessel003").await, (1_000, 500_000, 0, 0));
    app.stop().await;
}

/// The per-account cap (the default: a quarter of the seed fleet): a
/// reservation that would pass it is `RESOURCE_EXHAUSTED`, with what the
/// account holds and the cap in metadata; nothing is taken; other accounts
/// still reserve.
#[tokio::test]
async fn an_account_past_its_cap_is_resource_exhausted_with_the_figures() {
    use shippy_proto::vessel::quota;

    let app = TestApp::ready_with(AccountQuota::DEFAULT).await;
    let mut vessels = app.vessels();
    vessels
        .reserve(as_service(reserve("first", 400, 150_000)))
        .await
        .unwrap();
    let refused = vessels
        .reserve(as_service(reserve("second", 26, 1)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let figure = |key: &str| {
        refused
            .metadata()
            .get(key)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        [
            figure(quota::HELD_CONTAINERS),
            figure(quota::HELD_WEIGHT),
            figure(quota::MAX_CONTAINERS),
            figure(quota::MAX_WEIGHT),
        ],
        ["400", "150000", "425", "200000"]
    );
    assert!(
        refused.message().contains("cap of 425 containers"),
        "{refused:?}"
    );
    let other = ReserveRequest {
        owner_id: "account-2".into(),
        ..reserve("other", 26, 1)
    };
    vessels.reserve(as_service(other)).await.unwrap();
    app.stop().await;
}
