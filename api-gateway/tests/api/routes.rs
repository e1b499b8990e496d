//! Every `/api/v1` route: its success, and each error status it can give.

use serde_json::json;

use crate::{ADMIN, Gateway, PASSWORD};

fn consignment(description: &str, weight: i32, containers: usize) -> serde_json::Value {
    let containers: Vec<_> = (0..containers)
        .map(|n| json!({"customer_id": format!("cust-{n}"), "origin": format!("Port {n}")}))
        .collect();
    json!({"description": description, "weight": weight, "containers": containers})
}

/// `POST /api/v1/consignments` of [`consignment`]`(description, weight, containers)`.
async fn ship(
    gateway: &Gateway,
    token: Option<&str>,
    (description, weight, containers): (&str, i32, usize),
) -> crate::Answer {
    let body = consignment(description, weight, containers);
    gateway.post("/api/v1/consignments", token, body).await
}

#[tokio::test]
async fn sign_up_log_in_and_read_your_profile() {
    let gateway = Gateway::start().await;
    let email = "alice@example.com";
    let signup = json!({"name": "Alice", "email": email, "company": "ACME", "password": PASSWORD});
    let created = gateway.post("/api/v1/users", None, signup.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let user = &created.json["user"];
    assert_eq!(user["email"], email);
    assert_eq!(user["company"], "ACME");
    assert!(user["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(user.get("password").is_none(), "never the password: {user}");

    let again = gateway.post("/api/v1/users", None, signup).await;
    again.assert_error(409, "ALREADY_EXISTS");

    let bad_email = gateway
        .post(
            "/api/v1/users",
            None,
            json!({"name": "B", "email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    bad_email.assert_error(400, "INVALID_ARGUMENT");
    assert!(bad_email.message().contains("email"), "{}", bad_email.text);

    let token = gateway.login(email).await;
    let wrong = gateway
        .post(
            "/api/v1/login",
            None,
            json!({"email": email, "password": "not the password"}),
        )
        .await;
    wrong.assert_error(401, "UNAUTHENTICATED");

    let me = gateway.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["user"]["email"], email);
    assert_eq!(me.json["user"]["id"], created.json["user"]["id"]);
    assert!(
        me.json["user"]["created_at"].as_str().is_some(),
        "{}",
        me.text
    );

    let anonymous = gateway.get("/api/v1/me", None).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    let forged = gateway.get("/api/v1/me", Some("forged.token.here")).await;
    forged.assert_error(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_body_that_is_not_the_json_expected_is_a_400_saying_why() {
    let gateway = Gateway::start().await;
    let json_type = [("content-type", "application/json")];
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, &[u8], &str); 5] = [
        (&json_type, b"{\"email\": ", "EOF"),
        (&json_type, b"{\"email\": \"a@b.c\"}", "password"),
        (
            &json_type,
            b"{\"email\": \"a@b.c\", \"password\": \"x\", \"admin\": true}",
            "unknown field `admin`",
        ),
        (&json_type, b"{\"email\": 5, \"password\": \"x\"}", "email"),
        (
            &[],
            b"{\"email\": \"a@b.c\", \"password\": \"x\"}",
            "content-type",
        ),
    ];
    for (headers, body, says) in cases {
        let answer = gateway
            .send("POST", "/api/v1/login", None, headers, Some(body.to_vec()))
            .await;
        answer.assert_error(400, "INVALID_ARGUMENT");
        assert!(answer.message().contains(says), "{says}: {}", answer.text);
    }
    let (_, token) = gateway.user("typo@example.com").await;
    let weight = gateway
        .post(
            "/api/v1/consignments",
            Some(&token),
            json!({"description": "x", "weight": "heavy"}),
        )
        .await;
    assert_eq!(weight.status, 400, "{}", weight.text);
    assert!(weight.message().contains("weight"), "{}", weight.text);

    let huge = vec![b' '; api_gateway::app::MAX_BODY_BYTES + 1];
    let answer = gateway
        .send("POST", "/api/v1/users", None, &json_type, Some(huge))
        .await;
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert!(answer.message().contains("larger than"), "{}", answer.text);
}

#[tokio::test]
async fn consignments_are_shipped_and_listed_for_their_owner_only() {
    let gateway = Gateway::start().await;
    let (alice_id, alice) = gateway.user("alice@example.com").await;
    let (_, bob) = gateway.user("bob@example.com").await;

    let shipped = ship(&gateway, Some(&alice), ("First", 100, 2)).await;
    assert_eq!(shipped.status, 201, "{}", shipped.text);
    let first = &shipped.json["consignment"];
    assert_eq!(first["owner_id"], alice_id.as_str());
    assert_eq!(first["containers"].as_array().unwrap().len(), 2);
    assert_eq!(first["containers"][1]["origin"], "Port 1");
    assert!(
        first["vessel_id"].as_str().is_some_and(|v| !v.is_empty()),
        "{first}"
    );
    let second = ship(&gateway, Some(&alice), ("Second", 200, 1)).await;
    assert_eq!(second.status, 201, "{}", second.text);

    // Newest first, one page at a time.
    let page = gateway
        .get("/api/v1/consignments?page_size=1", Some(&alice))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json["consignments"][0]["description"], "Second");
    let next = page.json["next_page_token"].as_str().unwrap().to_owned();
    assert!(!next.is_empty(), "{}", page.text);
    let older = gateway
        .get(
            &format!("/api/v1/consignments?page_size=1&page_token={next}"),
            Some(&alice),
        )
        .await;
    assert_eq!(older.status, 200, "{}", older.text);
    assert_eq!(older.json["consignments"][0]["description"], "First");
    assert_eq!(
        older.json["consignments"][0]["vessel_id"],
        first["vessel_id"]
    );

    // Another user's consignments never appear.
    let bobs = gateway.get("/api/v1/consignments", Some(&bob)).await;
    assert_eq!(bobs.status, 200, "{}", bobs.text);
    assert_eq!(bobs.json["consignments"], json!([]), "{}", bobs.text);
    assert_eq!(bobs.json["next_page_token"], "");

    // The errors.
    let anonymous = gateway.get("/api/v1/consignments", None).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    let anonymous = ship(&gateway, None, ("x", 1, 1)).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    let negative = ship(&gateway, Some(&alice), ("x", -5, 1)).await;
    negative.assert_error(400, "INVALID_ARGUMENT");
    assert!(negative.message().contains("weight"), "{}", negative.text);
    let too_heavy = ship(&gateway, Some(&alice), ("Mountain", 2_000_000_000, 1)).await;
    too_heavy.assert_error(422, "FAILED_PRECONDITION");
    let forged = gateway
        .get("/api/v1/consignments?page_token=forged", Some(&alice))
        .await;
    forged.assert_error(400, "INVALID_ARGUMENT");
    let bad_size = gateway
        .get("/api/v1/consignments?page_size=many", Some(&alice))
        .await;
    bad_size.assert_error(400, "INVALID_ARGUMENT");
    assert!(
        bad_size.message().contains("page_size"),
        "{}",
        bad_size.text
    );

    // Cancel: only the owner; the room goes back to the vessel.
    let vessel = first["vessel_id"].as_str().unwrap().to_owned();
    let used = |fleet: &serde_json::Value| {
        fleet["vessels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == vessel.as_str())
            .map(|v| {
                (
                    v["used_capacity"].as_i64().unwrap(),
                    v["used_weight"].as_i64().unwrap(),
                )
            })
            .unwrap()
    };
    let fleet = gateway.get("/api/v1/vessels", Some(&alice)).await;
    assert_eq!(used(&fleet.json), (3, 300), "{}", fleet.text);
    let path = format!("/api/v1/consignments/{}", first["id"].as_str().unwrap());
    let foreign = gateway.send("DELETE", &path, Some(&bob), &[], None).await;
    foreign.assert_error(404, "NOT_FOUND");
    let anonymous = gateway.send("DELETE", &path, None, &[], None).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    let cancelled = gateway.send("DELETE", &path, Some(&alice), &[], None).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.json["consignment"]["id"], first["id"]);
    let fleet = gateway.get("/api/v1/vessels", Some(&alice)).await;
    assert_eq!(
        used(&fleet.json),
        (1, 200),
        "only Second's room is used: {}",
        fleet.text
    );
    let left = gateway.get("/api/v1/consignments", Some(&alice)).await;
    assert_eq!(
        left.json["consignments"].as_array().unwrap().len(),
        1,
        "{}",
        left.text
    );
    let unknown = gateway
        .send(
            "DELETE",
            "/api/v1/consignments/no-such-id",
            Some(&alice),
            &[],
            None,
        )
        .await;
    unknown.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn vessels_are_listed_for_users_and_created_by_admins_only() {
    let gateway = Gateway::start().await;
    let (_, user) = gateway.user("carol@example.com").await;
    let (_, admin) = gateway.user(ADMIN).await;
    let ship = json!({"id": "gw-1", "name": "Gateway Queen", "capacity": 3, "max_weight": 300});

    let anonymous = gateway.post("/api/v1/vessels", None, ship.clone()).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    let forbidden = gateway
        .post("/api/v1/vessels", Some(&user), ship.clone())
        .await;
    forbidden.assert_error(403, "PERMISSION_DENIED");
    let created = gateway
        .post("/api/v1/vessels", Some(&admin), ship.clone())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["vessel"]["id"], "gw-1");
    assert_eq!(created.json["vessel"]["available"], true);
    assert_eq!(created.json["vessel"]["remaining_capacity"], 3);
    assert_eq!(created.json["vessel"]["remaining_weight"], 300);
    assert_eq!(created.json["vessel"]["used_capacity"], 0);
    let twice = gateway.post("/api/v1/vessels", Some(&admin), ship).await;
    twice.assert_error(409, "ALREADY_EXISTS");
    let bad = gateway
        .post(
            "/api/v1/vessels",
            Some(&admin),
            json!({"name": "Nothing", "capacity": 0, "max_weight": 1}),
        )
        .await;
    bad.assert_error(400, "INVALID_ARGUMENT");
    assert!(bad.message().contains("capacity"), "{}", bad.text);

    let fleet = gateway
        .get("/api/v1/vessels?page_size=200", Some(&user))
        .await;
    assert_eq!(fleet.status, 200, "{}", fleet.text);
    let ids = fleet.each("vessels", "id");
    assert_eq!(ids, ["gw-1", "vessel001", "vessel002", "vessel003"]);
    let page = gateway
        .get("/api/v1/vessels?page_size=3", Some(&user))
        .await;
    assert_eq!(page.json["next_page_token"], "vessel002", "{}", page.text);
    let anonymous = gateway.get("/api/v1/vessels", None).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn repeated_failed_logins_are_429_with_retry_after() {
    let gateway = Gateway::start().await;
    gateway.user("dave@example.com").await;
    let wrong = json!({"email": "dave@example.com", "password": "wrong password"});
    // From an address dave never logged in from (his own are not locked out).
    let guesser = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut throttled = None;
    for _ in 0..20 {
        let answer = gateway.post_from(guesser, "/api/v1/login", &wrong).await;
        if answer.status == 429 {
            throttled = Some(answer);
            break;
        }
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    let answer = throttled.expect("user-service throttles failed logins");
    assert_eq!(answer.code(), "RESOURCE_EXHAUSTED");
    let seconds: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // user-service's window is 15 minutes; the wait came as metadata.
    assert!((1..=900).contains(&seconds), "{seconds}");
    assert!(
        answer.message().contains(&format!("retry in {seconds}s")),
        "Retry-After agrees with the message: {}",
        answer.text
    );
}

#[tokio::test]
async fn the_repositorys_own_consignment_json_ships_as_it_does_over_grpc() {
    let gateway = Gateway::start().await;
    let (owner, token) = gateway.user("sample@example.com").await;
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../consignment.json"))
        .expect("the repository's consignment.json");
    let named: serde_json::Value = serde_json::from_slice(&sample).unwrap();
    assert_eq!(named["vessel_id"], "vessel001", "the file names a vessel");

    let shipped = gateway
        .send(
            "POST",
            "/api/v1/consignments",
            Some(&token),
            &[("content-type", "application/json")],
            Some(sample),
        )
        .await;
    assert_eq!(shipped.status, 201, "{}", shipped.text);
    let consignment = &shipped.json["consignment"];
    assert_eq!(consignment["description"], named["description"]);
    assert_eq!(consignment["weight"], named["weight"]);
    assert_eq!(consignment["owner_id"], owner.as_str());
    assert_eq!(consignment["containers"].as_array().unwrap().len(), 3);
    // The service picked the vessel: the smallest with room for 55 t.
    assert_eq!(consignment["vessel_id"], "vessel002", "{consignment}");
}

#[tokio::test]
async fn a_protected_route_without_a_token_is_401_before_its_body_is_read() {
    let gateway = Gateway::start().await;
    let json_type = ("content-type", "application/json");
    let malformed = b"{\"name\": 5, \"remaining_capacity\": 1".to_vec();
    let huge = vec![b' '; api_gateway::app::MAX_BODY_BYTES + 1];
    for (path, headers, body) in [
        // The issue's probe: no token, a malformed body.
        ("/api/v1/vessels", vec![json_type], malformed.clone()),
        ("/api/v1/consignments", vec![json_type], malformed.clone()),
        // A body over the limit: 401, not 413.
        ("/api/v1/consignments", vec![json_type], huge.clone()),
        ("/api/v1/vessels", vec![json_type], huge),
        // No content type, no JSON: still 401.
        ("/api/v1/vessels", vec![], malformed.clone()),
        // An authorization that is no bearer token.
        (
            "/api/v1/vessels",
            vec![json_type, ("authorization", "Basic YWRtaW46YWRtaW4=")],
            malformed.clone(),
        ),
        (
            "/api/v1/consignments",
            vec![json_type, ("authorization", "Bearer ")],
            malformed.clone(),
        ),
        (
            "/api/v1/consignments",
            vec![json_type, ("authorization", "Bearer not-a-jwt")],
            malformed.clone(),
        ),
    ] {
        let answer = gateway.send("POST", path, None, &headers, Some(body)).await;
        answer.assert_error_for(&format!("{path} {headers:?}"), 401, "UNAUTHENTICATED");
        assert!(
            !answer.message().contains("expected"),
            "says nothing of the schema: {}",
            answer.text
        );
    }
    // Signed in, the same malformed body is the 400 that describes it.
    let (_, token) = gateway.user("schema@example.com").await;
    let answer = gateway
        .send(
            "POST",
            "/api/v1/consignments",
            Some(&token),
            &[json_type],
            Some(malformed),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
}

#[tokio::test]
async fn an_address_with_several_dots_signs_up_and_login_takes_any_address() {
    // The document's sign-up pattern is a dot-atom (any number of dots, as
    // user-service takes), and login's email is loose (accounts made
    // before the sign-up rules log in with what they signed up with).
    // cargo dev smoke openapi checks the served pattern itself in Python.
    let gateway = Gateway::start().await;
    let document = gateway.get("/api/openapi.json", None).await.json;
    let schemas = &document["components"]["schemas"];
    let pattern = schemas["NewUser"]["properties"]["email"]["pattern"]
        .as_str()
        .unwrap_or_default();
    assert!(
        pattern.contains(r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"),
        "the local part takes any number of dots: {pattern}"
    );
    let login = &schemas["Login"]["properties"]["email"];
    assert_eq!(login["maxLength"], 254, "{login}");
    assert!(login.get("format").is_none(), "{login}");

    let email = "john.q.public@example.com";
    let created = gateway
        .post(
            "/api/v1/users",
            None,
            json!({"name": "John Q. Public", "email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["user"]["email"], email);
    gateway.login(email).await;
}
