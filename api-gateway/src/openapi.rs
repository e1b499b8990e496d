//! The OpenAPI 3.1 document at `/api/openapi.json`, generated from the code:
//! the operations from the handlers' `#[utoipa::path]`s, registered with
//! the router by the same `routes!` call that routes them (so a route of
//! the JSON API cannot exist undocumented), the schemas from the request
//! and answer types' `ToSchema` (so a field cannot be documented that the
//! API refuses), with the constraints the services enforce ([`schema`]).
//! What every route may answer from the edge itself (rate limit, open
//! circuit, slow service, slow or large body) is added by [`document`]
//! from the layers that apply to every route.

use std::sync::Arc;

use axum::{Json, extract::State};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::error::HttpError;

/// The document's fixed parts; the operations come from [`crate::api::routes`].
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "shippy api-gateway",
        description = "The JSON API over shippy's services. Errors are always \
            `{\"error\": {\"code\", \"message\"}}`, `code` being the gRPC code's name."
    ),
    components(schemas(ErrorBody, ErrorDetail))
)]
pub struct ApiDoc;

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // the shape of `crate::error`'s answers, for the document only
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// The gRPC code's name, e.g. `INVALID_ARGUMENT`.
    #[schema(example = "INVALID_ARGUMENT")]
    code: String,
    /// For a person: what to fix or when to retry.
    message: String,
}

/// The HTTP methods of an OpenAPI path item: its other keys (`parameters`,
/// `summary`, `servers`, …) are not operations.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The whole document, as served: the routed operations (the JSON API's
/// and the ops dashboard's) plus what every route may answer from the edge.
/// An error only if the generated document cannot be turned into JSON,
/// which the gateway's start reports instead of serving an empty one.
pub fn document() -> Result<Value, serde_json::Error> {
    let (_, mut openapi) = crate::api::routes().split_for_parts();
    openapi.merge(crate::ops::document());
    let mut document = serde_json::to_value(&openapi)?;
    document["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    document["components"]["securitySchemes"] =
        json!({"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}});
    add_edge_answers_to(&mut document["paths"]);
    Ok(document)
}

/// [`add_edge_answers`] to every operation of `paths`.
fn add_edge_answers_to(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if METHODS.contains(&method.as_str()) && operation.is_object() {
                add_edge_answers(operation);
            }
        }
    }
}

fn error(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn seconds(description: &str) -> Value {
    json!({"schema": {"type": "integer", "minimum": 0}, "description": description})
}

/// The answers of the layers every route is behind (`crate::app::router`):
/// the rate limit (429), each service's breaker (503) and deadline (504),
/// the body's size and read deadline (413, 408) where there is a body, and
/// the bearer check (401) where the operation needs a token.
fn add_edge_answers(operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let secured = operation.get("security").is_some();
    let has_query = operation["parameters"]
        .as_array()
        .is_some_and(|parameters| parameters.iter().any(|p| p["in"] == "query"));
    let responses = &mut operation["responses"];
    let mut limited = error("too many requests from this client: wait `Retry-After` seconds");
    limited["headers"] = json!({
        "Retry-After": seconds("seconds until a retry can succeed"),
        "RateLimit-Limit": seconds("requests the client may send at once (draft-ietf-httpapi-ratelimit-headers-07)"),
        "RateLimit-Remaining": seconds("requests left at once"),
        "RateLimit-Reset": seconds("seconds until the whole allowance is back"),
        "RateLimit-Policy": {"schema": {"type": "string"},
            "description": "the allowance and the seconds it takes to refill, e.g. `40;w=2`"},
    });
    // The login throttle's 429 too may be the edge's.
    if let Some(throttled) = responses.get_mut("429") {
        for (name, header) in limited["headers"].as_object().cloned().unwrap_or_default() {
            if throttled["headers"].get(&name).is_none() {
                throttled["headers"][name] = header;
            }
        }
    }
    let mut add = |status: &str, answer: Value| {
        if responses.get(status).is_none() {
            responses[status] = answer;
        }
    };
    add("429", limited);
    let mut unavailable = error(
        "a service this request needs is unreachable, or its circuit is open (then with `Retry-After`)",
    );
    unavailable["headers"] = json!({"Retry-After": seconds(
        "seconds until the service is tried again (its circuit is open)")});
    add("503", unavailable);
    add(
        "504",
        error("a service this request needs did not answer in time"),
    );
    if has_body {
        add(
            "408",
            error("the body was not received in time (HTTP_BODY_READ_TIMEOUT)"),
        );
        add(
            "413",
            error(&format!(
                "the body is larger than {} bytes",
                crate::app::MAX_BODY_BYTES
            )),
        );
    }
    // What the gateway's own parsing refuses (`crate::error::Input`).
    if has_body {
        add(
            "400",
            error("a field is invalid, or the body is not the JSON expected"),
        );
    }
    if has_query {
        add(
            "400",
            error(
                "a query parameter is invalid (a page_token not given out, an unknown parameter)",
            ),
        );
    }
    if secured {
        add(
            "401",
            error("no token, or not a valid one: send `authorization: Bearer <token>`"),
        );
    }
}

/// The document `GET /api/openapi.json` serves, made once at the start.
/// One that cannot be made is logged as an error there, and the route
/// answers 500 saying so, never an empty document.
pub fn served() -> Arc<Option<Value>> {
    match document() {
        Ok(document) => Arc::new(Some(document)),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document could not be generated: /api/openapi.json answers 500");
            Arc::new(None)
        }
    }
}

/// `GET /api/openapi.json`.
pub async fn serve(State(document): State<Arc<Option<Value>>>) -> Result<Json<Value>, HttpError> {
    match document.as_ref() {
        Some(document) => Ok(Json(document.clone())),
        None => Err(HttpError::new(
            tonic::Code::Internal,
            "the OpenAPI document could not be generated; the gateway's log at its start says why",
        )),
    }
}

/// The schemas of fields whose rules the services check beyond their JSON
/// type. Lengths are in bytes there but in characters in JSON Schema; a
/// limit of `n` bytes is documented as `n` characters of printable ASCII or
/// `n / 4` characters of anything else, which every string the services
/// take satisfies not, but every string documented as valid is taken.
/// One-line fields refuse control characters (Unicode `Cc`); names must
/// hold something besides spaces.
pub mod schema {
    use utoipa::openapi::{
        KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type, schema::AnyOfBuilder,
    };

    /// A character of one-line text: not a control character.
    const LINE: &str = r"[^\x00-\x1f\x7f-\x9f]";
    /// A character of free text: line breaks and tabs too.
    const FREE: &str = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]";
    /// A printable ASCII character.
    const ASCII: &str = r"[\x20-\x7e]";
    /// Not white space (what Rust's `trim` removes) nor a control character.
    const SOLID: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
    /// A printable ASCII character other than space.
    const ASCII_SOLID: &str = r"[\x21-\x7e]";

    fn string(pattern: String, min: usize, max: usize) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .min_length((min > 0).then_some(min))
            .max_length(Some(max))
            .into()
    }

    /// Whether text may be blank.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Blank {
        /// Empty or only spaces is fine.
        Allowed,
        /// At least one character that is not a space.
        Refused,
        /// Empty is fine, only spaces is not.
        OnlyEmpty,
    }

    /// Text of at most `max_bytes` bytes of UTF-8, of `chars` characters
    /// (`ascii` the same in ASCII).
    fn text(
        description: &str,
        max_bytes: usize,
        (chars, ascii): (&str, &str),
        blank: Blank,
    ) -> RefOr<Schema> {
        let pattern = |class: &str, solid_class: &str| match blank {
            Blank::Allowed => format!("^{class}*$"),
            Blank::Refused => format!("^{class}*{solid_class}{class}*$"),
            Blank::OnlyEmpty => format!("^(?:{class}*{solid_class}{class}*)?$"),
        };
        AnyOfBuilder::new()
            .item(string(pattern(ascii, ASCII_SOLID), 0, max_bytes))
            .item(string(pattern(chars, SOLID), 0, max_bytes / 4))
            .description(Some(format!(
                "{description} At most {max_bytes} bytes of UTF-8 (documented as {max_bytes} \
                 ASCII characters or {} of any kind).",
                max_bytes / 4
            )))
            .into()
    }

    /// A user's name.
    pub fn user_name() -> RefOr<Schema> {
        text("One line, not blank.", 200, (LINE, ASCII), Blank::Refused)
    }

    /// A user's company.
    pub fn company() -> RefOr<Schema> {
        text(
            "One line; may be empty.",
            200,
            (LINE, ASCII),
            Blank::Allowed,
        )
    }

    /// An RFC 5322 dot-atom local part of at most 64 characters (the
    /// lookahead; ECMA 262 and Python's `re` both take it) and a DNS domain
    /// of at least two labels: what user-service's `Email::parse_new` takes.
    const NEW_EMAIL: &str = concat!(
        r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
        r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    );

    /// A new account's address: one the welcome mail can reach.
    pub fn new_email() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
            .pattern(Some(NEW_EMAIL))
            .max_length(Some(254))
            .description(Some(
                "ASCII, a plain dot-atom of at most 64 characters before the @ (no quotes, \
                 spaces or IP literals); compared without case.",
            ))
            .into()
    }

    /// An address at login: loose, since an account made before the sign-up
    /// rules (a non-ASCII or quoted address) still logs in. One that is no
    /// address at all is 400, one of no account 401.
    pub fn email() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{LINE}*$")))
            .max_length(Some(254))
            .description(Some(
                "The account's address, as it signed up (older accounts may have non-ASCII or \
                 quoted addresses); compared without case. One line, at most 254 bytes.",
            ))
            .into()
    }

    fn password_with(min: usize, description: &str) -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(string(r"^[\x00-\x7f]*$".into(), min, 71))
            .item(string(r"^[\s\S]*$".into(), min, 71 / 4))
            .description(Some(format!(
                "{description} At most 71 bytes of UTF-8 (bcrypt's limit; documented as 71 \
                 ASCII characters or 17 of any kind)."
            )))
            .into()
    }

    /// A new password.
    pub fn new_password() -> RefOr<Schema> {
        password_with(8, "At least 8 characters.")
    }

    /// A password at login.
    pub fn password() -> RefOr<Schema> {
        password_with(1, "Not empty.")
    }

    /// A consignment's description.
    pub fn description() -> RefOr<Schema> {
        text(
            "Free text (line breaks and tabs allowed), not blank.",
            500,
            (FREE, r"[\x09\x0a\x0d\x20-\x7e]"),
            Blank::Refused,
        )
    }

    /// A container's `id`, `customer_id`, `origin` or `user_id`.
    pub fn container_field() -> RefOr<Schema> {
        text(
            "One line; may be empty.",
            500,
            (LINE, ASCII),
            Blank::Allowed,
        )
    }

    /// The `vessel_id` a new consignment may name, which is not used.
    pub fn ignored_vessel_id() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Ignored: the service picks the vessel (the answer's `vessel_id` says which); \
                 taken so that the original project's consignment.json is.",
            ))
            .into()
    }

    /// A new vessel's id.
    pub fn vessel_id() -> RefOr<Schema> {
        text(
            "One line; empty or absent: a generated one. Taken ids are 409.",
            200,
            (LINE, ASCII),
            Blank::Allowed,
        )
    }

    /// A new vessel's name.
    pub fn vessel_name() -> RefOr<Schema> {
        text("One line, not blank.", 200, (LINE, ASCII), Blank::Refused)
    }

    /// A new vessel's owner.
    pub fn owner_id() -> RefOr<Schema> {
        text(
            "One line; may be empty.",
            200,
            (LINE, ASCII),
            Blank::Allowed,
        )
    }

    /// A page token of the fleet: the last vessel's id.
    pub fn fleet_page_token() -> RefOr<Schema> {
        text(
            "The `next_page_token` of the previous page (the last vessel's id: the page starts \
             after it); empty or absent: the first page.",
            200,
            (LINE, ASCII),
            Blank::OnlyEmpty,
        )
    }

    /// A page token of consignments.
    pub fn page_token() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[A-Za-z0-9_-]*$"))
            .max_length(Some(512))
            .description(Some(
                "The `next_page_token` of the previous page (base64url); empty or absent: \
                 the first page. A token the service did not give out is 400.",
            ))
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_the_edges_own_answers() {
        let document = document().expect("the document is JSON");
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() >= 5, "{document}");
        for (path, item) in paths {
            for (method, operation) in item.as_object().cloned().unwrap_or_default() {
                let responses = &operation["responses"];
                let limited = &responses["429"]["headers"];
                for header in [
                    "Retry-After",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                    "RateLimit-Policy",
                ] {
                    assert!(limited[header].is_object(), "{method} {path}: 429 {header}");
                }
                assert!(
                    responses["503"]["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 503 (open circuit) Retry-After"
                );
                assert!(responses["504"].is_object(), "{method} {path}: 504");
                if operation.get("security").is_some() {
                    assert!(responses["401"].is_object(), "{method} {path}: 401");
                }
                if operation.get("requestBody").is_some() {
                    assert!(responses["413"].is_object(), "{method} {path}: 413");
                    assert!(responses["408"].is_object(), "{method} {path}: 408");
                }
            }
        }
    }

    #[test]
    fn a_path_items_keys_other_than_methods_are_left_alone() {
        let parameters = json!([{"name": "id", "in": "path", "required": true,
            "schema": {"type": "string"}}]);
        let mut paths = json!({"/things/{id}": {
            "summary": "a thing",
            "parameters": parameters,
            "get": {"responses": {"200": {"description": "the thing"}}},
        }});
        add_edge_answers_to(&mut paths);
        let item = &paths["/things/{id}"];
        assert_eq!(item["summary"], "a thing");
        assert_eq!(item["parameters"], parameters);
        assert!(item["get"]["responses"]["429"].is_object(), "{item}");
        assert!(item["get"]["responses"]["200"].is_object(), "{item}");
    }

    #[test]
    fn a_new_vessel_documents_only_the_fields_it_takes() {
        let document = document().expect("the document is JSON");
        let schema = &document["components"]["schemas"]["NewVessel"];
        let mut names: Vec<_> = schema["properties"]
            .as_object()
            .map(|fields| fields.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        assert_eq!(
            names,
            [
                "available",
                "capacity",
                "id",
                "max_weight",
                "name",
                "owner_id"
            ]
        );
        assert_eq!(schema["additionalProperties"], false, "{schema}");
        assert_eq!(schema["properties"]["capacity"]["minimum"], 1, "{schema}");
    }
}
