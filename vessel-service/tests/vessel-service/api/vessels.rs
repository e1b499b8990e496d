//! The fleet over gRPC: finding the smallest vessel that fits, creating
//! vessels (administrators only) and listing them.

use shippy_harness::{refused, refuses_each};
use shippy_proto::vessel::v1::Vessel;
use tonic::Code;

use super::{TestApp, bearer, new_vessel, spec};

#[tokio::test]
async fn find_available_answers_the_smallest_seed_vessel_that_fits() {
    let app = TestApp::ready().await;
    // The original's sample consignment: 3 containers, 55 000 kg.
    let vessel = app.pick(3, 55_000).await;
    assert_eq!(vessel.id, "vessel002");
    assert!(vessel.capacity >= 3 && vessel.max_weight >= 55_000);

    let vessel = app.pick(300, 150_000).await;
    assert_eq!(
        (vessel.id.as_str(), vessel.name.as_str()),
        ("vessel001", "Kane's Salty Secret")
    );
    app.stop().await;
}

#[tokio::test]
async fn nothing_fits_is_not_found_naming_the_spec() {
    let app = TestApp::ready().await;
    // No vessel carries 5000 containers.
    refused(
        app.vessels().find_available(spec(5000, 10)).await,
        Code::NotFound,
        &["capacity >= 5000", "max_weight >= 10"],
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_specifications_are_invalid_argument_and_the_service_keeps_serving() {
    let app = TestApp::ready().await;
    let cases = [
        (spec(0, 100), "capacity"),
        (spec(-3, 100), "capacity"),
        (spec(1, 0), "max_weight"),
        (spec(1, i32::MIN), "max_weight"),
    ];
    refuses_each(Code::InvalidArgument, cases, async |bad| {
        app.vessels().find_available(bad).await
    })
    .await;
    app.stop_after_an_answer("still serving").await;
}

#[tokio::test]
async fn create_stores_the_vessel_and_find_available_can_pick_it() {
    let app = TestApp::ready().await;
    let created = app
        .vessels()
        .create(app.as_admin(new_vessel("dinghy", "Little Dinghy", 2, 50)))
        .await
        .expect("created")
        .into_inner();
    assert!(created.created);
    let vessel = created.vessel.expect("the stored vessel");
    assert_eq!(
        (
            vessel.id.as_str(),
            vessel.name.as_str(),
            vessel.capacity,
            vessel.max_weight
        ),
        ("dinghy", "Little Dinghy", 2, 50)
    );
    assert_eq!(
        vessel.available,
        Some(true),
        "available unless said otherwise"
    );

    assert_eq!(
        app.pick(1, 10).await.id,
        "dinghy",
        "the new vessel is the smallest fit"
    );

    // An unavailable vessel is stored but never picked.
    let busy = Vessel {
        available: Some(false),
        ..new_vessel("canoe", "Canoe", 1, 1)
    };
    app.vessels()
        .create(app.as_admin(busy))
        .await
        .expect("created");
    assert_eq!(app.pick(1, 1).await.id, "dinghy");
    app.stop().await;
}

#[tokio::test]
async fn create_generates_an_id_when_none_is_given() {
    let app = TestApp::ready().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let vessel = app
            .vessels()
            .create(app.as_admin(new_vessel("", "Anonymous", 10, 10)))
            .await
            .expect("created")
            .into_inner()
            .vessel
            .unwrap();
        assert!(!vessel.id.is_empty());
        ids.push(vessel.id);
    }
    assert_ne!(ids[0], ids[1]);
    app.stop().await;
}

#[tokio::test]
async fn a_taken_id_is_already_exists_and_nothing_is_overwritten() {
    let app = TestApp::ready().await;
    // Vessel001 is seeded.
    refused(
        app.vessels()
            .create(app.as_admin(new_vessel("vessel001", "Impostor", 1, 1)))
            .await,
        Code::AlreadyExists,
        &["vessel001"],
    );
    assert_eq!(app.pick(300, 150_000).await.name, "Kane's Salty Secret");
    app.stop().await;
}

#[tokio::test]
async fn bad_vessels_are_invalid_argument() {
    let app = TestApp::ready().await;
    let cases = [
        (new_vessel("", "", 1, 1), "name"),
        (new_vessel("", "   ", 1, 1), "name"),
        (new_vessel("", "Ship", 0, 1), "capacity"),
        (new_vessel("", "Ship", 1, -1), "max_weight"),
        (new_vessel(&"x".repeat(500), "Ship", 1, 1), "id"),
        (new_vessel("", "Ship\0", 1, 1), "name"),
        (new_vessel("", "Ship\r\nINFO forged", 1, 1), "name"),
        (
            new_vessel("", &format!("{}\n", "y".repeat(10_000)), 1, 1),
            "name",
        ),
        (
            Vessel {
                owner_id: "owner\0".into(),
                ..new_vessel("", "Ship", 1, 1)
            },
            "owner_id",
        ),
    ];
    refuses_each(Code::InvalidArgument, cases, async |bad| {
        app.vessels().create(app.as_admin(bad)).await
    })
    .await;
    app.stop_after_an_answer("still serving").await;
}

#[tokio::test]
async fn create_needs_an_admin_token_and_find_available_needs_none() {
    let app = TestApp::ready().await;
    let capture = new_vessel("trap", "Capture", 1, 1_000_000);

    // No token.
    refused(
        app.vessels().create(capture.clone()).await,
        Code::Unauthenticated,
        &[],
    );
    // Garbage token.
    refused(
        app.vessels()
            .create(bearer(capture.clone(), "garbage"))
            .await,
        Code::Unauthenticated,
        &[],
    );
    let user = app.users.token("someone@example.com").await;
    // Not an admin.
    refused(
        app.vessels().create(bearer(capture.clone(), &user)).await,
        Code::PermissionDenied,
        &["admin"],
    );

    // Nothing was stored: the smallest fit is still a seeded vessel.
    assert_ne!(app.pick(1, 1).await.id, "trap");

    app.vessels()
        .create(app.as_admin(capture))
        .await
        .expect("an admin creates vessels");
    app.stop().await;
}

#[tokio::test]
async fn list_vessels_pages_the_fleet_for_any_signed_in_user() {
    use shippy_proto::vessel::v1::ListRequest;
    let app = TestApp::ready().await;
    // No token.
    refused(
        app.vessels().list_vessels(ListRequest::default()).await,
        Code::Unauthenticated,
        &[],
    );

    let user = app.users.token("lister@example.com").await;
    let page = |page_size, page_token: &str| {
        bearer(
            ListRequest {
                page_size,
                page_token: page_token.into(),
            },
            &user,
        )
    };
    let first = app
        .vessels()
        .list_vessels(page(2, ""))
        .await
        .expect("a user lists the fleet")
        .into_inner();
    let ids: Vec<_> = first.vessels.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["vessel001", "vessel002"]);
    assert_eq!(first.next_page_token, "vessel002");
    let second = app
        .vessels()
        .list_vessels(page(2, &first.next_page_token))
        .await
        .expect("the next page")
        .into_inner();
    let ids: Vec<_> = second.vessels.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["vessel003"]);
    assert_eq!(second.next_page_token, "", "the last page");

    // A forged page token.
    refused(
        app.vessels().list_vessels(page(2, "\u{0}bad")).await,
        Code::InvalidArgument,
        &[],
    );
    app.stop().await;
}
