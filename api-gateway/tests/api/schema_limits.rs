//! Numbers and lengths at the edges of what the API document allows: whole
//! numbers written with a fraction are taken, and each documented limit is
//! taken while one past it is a 400.

use serde_json::json;

use crate::{ADMIN, Gateway};

#[tokio::test]
async fn whole_numbers_written_with_a_fraction_are_taken_as_json_schema_counts_them() {
    // JSON Schema's `integer` (and JavaScript's numbers) make no difference
    // between 3 and 3.0; the fuzz run found `"capacity": 124.0` refused.
    let gateway = Gateway::start().await;
    let (_, admin) = gateway.user(ADMIN).await;
    let ship = json!({"id": "gw-float", "name": "Float", "capacity": 3.0, "max_weight": 3e2});
    let created = gateway.post("/api/v1/vessels", Some(&admin), ship).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["vessel"]["capacity"], 3);
    assert_eq!(created.json["vessel"]["max_weight"], 300);
    let shipped = gateway
        .post(
            "/api/v1/consignments",
            Some(&admin),
            json!({"description": "Floats", "weight": 10.0, "containers": [{}]}),
        )
        .await;
    assert_eq!(shipped.status, 201, "{}", shipped.text);
    assert_eq!(shipped.json["consignment"]["weight"], 10);

    for (capacity, why) in [
        (json!(1.5), "not whole"),
        (json!(2_147_483_648_u64), "past i32"),
        (json!(2_147_483_648.0), "past i32, as a float"),
        (json!(-1e300), "far below"),
        (json!("3"), "a string"),
    ] {
        let refused = gateway
            .post(
                "/api/v1/vessels",
                Some(&admin),
                json!({"name": "Bad", "capacity": capacity, "max_weight": 1}),
            )
            .await;
        refused.assert_error_for(why, 400, "INVALID_ARGUMENT");
        assert!(refused.message().contains("capacity"), "{}", refused.text);
    }
}

/// The `maxLength` of branch `branch` of the `anyOf` documenting `field` of
/// the request schema `schema`.
fn documented_max(document: &serde_json::Value, schema: &str, field: &str, branch: usize) -> usize {
    let length = &document["components"]["schemas"][schema]["properties"][field]["anyOf"][branch]["maxLength"];
    usize::try_from(
        length
            .as_u64()
            .unwrap_or_else(|| panic!("{schema}.{field}: {length}")),
    )
    .unwrap()
}

#[tokio::test]
async fn what_the_document_allows_at_its_limits_is_taken() {
    // The document's limits (in characters) are what the services take (in
    // bytes): a sign-up at each documented limit succeeds, one past is a
    // 400, never a 500 (the fuzz run found a 72-byte password taken by
    // user-service's rules and refused by bcrypt).
    let gateway = Gateway::start().await;
    let document = gateway.get("/api/openapi.json", None).await.json;
    let password_bytes = documented_max(&document, "NewUser", "password", 0);
    let name_ascii = documented_max(&document, "NewUser", "name", 0);
    let name_any = documented_max(&document, "NewUser", "name", 1);
    let password = "p".repeat(password_bytes);
    for (email, name) in [
        ("limits-ascii@example.com", "n".repeat(name_ascii)),
        // Four bytes each: the most any character takes.
        ("limits-any@example.com", "🚢".repeat(name_any)),
    ] {
        let created = gateway
            .post(
                "/api/v1/users",
                None,
                json!({"name": name, "email": email, "password": password}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let login = gateway
            .post(
                "/api/v1/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.text);
    }
    for (what, body) in [
        (
            "a password past the limit",
            json!({"name": "Past", "email": "past@example.com", "password": format!("{password}p")}),
        ),
        (
            "a name past the limit",
            json!({"name": "n".repeat(name_ascii + 1), "email": "past@example.com", "password": password}),
        ),
    ] {
        let refused = gateway.post("/api/v1/users", None, body).await;
        refused.assert_error_for(what, 400, "INVALID_ARGUMENT");
    }
    let login = gateway
        .post(
            "/api/v1/login",
            None,
            json!({"email": "limits-ascii@example.com", "password": format!("{password}p")}),
        )
        .await;
    login.assert_error(400, "INVALID_ARGUMENT");
}
