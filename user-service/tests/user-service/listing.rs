//! Listing accounts and reading profiles: pages that hold every user once,
//! and only administrators list users or read someone else's profile.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shippy_harness::refused;
use shippy_harness::{
    ADMIN, bearer,
    user::{TestApp, user_id},
};
use shippy_proto::user::v1::{Request as ListRequest, User};
use tonic::Code;

use crate::api::base64_decode;

#[tokio::test]
async fn get_all_pages_through_every_user_once() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for n in 0..5 {
        created.push(
            app.create_user(&format!("User {n}"), &format!("u{n}@example.com"))
                .await,
        );
    }
    let token = app.admin_token().await;
    let page = |page_size, page_token: &str| {
        bearer(
            ListRequest {
                page_size,
                page_token: page_token.into(),
            },
            &token,
        )
    };
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let answer = app
            .users()
            .get_all(page(2, &page_token))
            .await
            .expect("a page")
            .into_inner();
        pages += 1;
        assert!(answer.users.len() <= 2);
        seen.extend(answer.users.into_iter().map(|user| user.id));
        if answer.next_page_token.is_empty() {
            break;
        }
        page_token = answer.next_page_token;
    }
    assert_eq!(pages, 3);
    seen.retain(|id| created.contains(id)); // the admin came last
    assert_eq!(seen, created, "every user once, in creation order");

    let everything = app
        .users()
        .get_all(page(1_000_000, ""))
        .await
        .expect("bounded, not refused")
        .into_inner();
    assert_eq!(everything.users.len(), 6, "five and the admin");

    // Bad page token.
    refused(
        app.users().get_all(page(2, "forged")).await,
        Code::InvalidArgument,
        &[],
    );
    app.stop().await;
}

#[tokio::test]
async fn only_admins_list_users_and_read_other_profiles() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("Alice", "alice@example.com").await;
    let bob = app.create_user("Bob", "bob@example.com").await;
    let alice_token = app.login("alice@example.com").await;

    // Not an admin.
    refused(
        app.users()
            .get_all(bearer(ListRequest::default(), &alice_token))
            .await,
        Code::PermissionDenied,
        &[],
    );
    for other in [
        user_id(&bob),
        User {
            email: "bob@example.com".into(),
            ..Default::default()
        },
        User {
            email: "nobody@example.com".into(),
            ..Default::default()
        },
    ] {
        // Someone else's profile.
        refused(
            app.users().get(bearer(other, &alice_token)).await,
            Code::PermissionDenied,
            &[],
        );
    }
    let own = app
        .users()
        .get(bearer(user_id(&alice), &alice_token))
        .await
        .expect("her own profile")
        .into_inner();
    assert_eq!(own.user.unwrap().email, "alice@example.com");

    // The administrator's token carries the role; they read anyone and list all.
    let admin_token = app.admin_token().await;
    let payload = admin_token.split('.').nth(1).unwrap();
    let claims = base64_decode(payload);
    assert!(claims.contains(r#""roles":["admin"]"#), "{claims}");
    let alice_claims = base64_decode(alice_token.split('.').nth(1).unwrap());
    assert!(!alice_claims.contains("admin"), "{alice_claims}");
    let found = app
        .users()
        .get(bearer(
            User {
                email: "BOB@example.com".into(),
                ..Default::default()
            },
            &admin_token,
        ))
        .await
        .expect("admins read anyone")
        .into_inner();
    assert_eq!(found.user.unwrap().id, bob);
    let listed = app
        .users()
        .get_all(bearer(ListRequest::default(), &admin_token))
        .await
        .expect("admins list")
        .into_inner();
    let emails: Vec<_> = listed
        .users
        .iter()
        .map(|user| user.email.as_str())
        .collect();
    assert_eq!(emails, ["alice@example.com", "bob@example.com", ADMIN]);
    app.stop().await;
}
