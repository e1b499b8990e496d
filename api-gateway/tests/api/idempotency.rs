//! `POST /api/v1/consignments` with an `Idempotency-Key` header: the same
//! key and body answer the same consignment (booked once), another body is
//! 409, a malformed key 400.

use serde_json::{Value, json};

use crate::Gateway;

fn consignment(weight: i64) -> Value {
    json!({
        "description": "Crates",
        "weight": weight,
        "containers": [{ "customer_id": "c1", "origin": "Leeds" }],
    })
}

async fn ship(gateway: &Gateway, token: &str, key: &[&str], body: &Value) -> crate::Answer {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(key.iter().map(|key| ("idempotency-key", *key)));
    gateway
        .send(
            "POST",
            "/api/v1/consignments",
            Some(token),
            &headers,
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
}

#[tokio::test]
async fn a_create_sent_again_with_its_idempotency_key_books_once() {
    let gateway = Gateway::start().await;
    let (_, token) = gateway.user("again@example.com").await;
    let first = ship(&gateway, &token, &["order-9"], &consignment(40)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = ship(&gateway, &token, &["order-9"], &consignment(40)).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(
        again.json["consignment"]["id"],
        first.json["consignment"]["id"]
    );
    let listed = gateway.get("/api/v1/consignments", Some(&token)).await;
    assert_eq!(
        listed.json["consignments"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );

    let other = ship(&gateway, &token, &["order-9"], &consignment(41)).await;
    assert_eq!(other.status, 409, "{}", other.text);
    assert!(
        other.message().contains("idempotency key"),
        "{}",
        other.text
    );

    for keys in [&["has space"][..], &["a", "b"][..]] {
        let bad = ship(&gateway, &token, keys, &consignment(40)).await;
        assert_eq!(bad.status, 400, "{keys:?}: {}", bad.text);
        assert!(bad.message().contains("dempotency"), "{}", bad.text);
    }
}
