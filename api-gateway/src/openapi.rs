//! The OpenAPI 3 document at `/api/openapi.json`, built from [`ROUTES`]:
//! the table the API's tests check against the router, so a route cannot
//! be added without being documented.

use axum::Json;
use serde_json::{Value, json};

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// `get`, `post` or `delete`.
    pub method: &'static str,
    /// e.g. `/api/v1/users`.
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// The request body's schema name, if any.
    pub body: Option<&'static str>,
    /// The success status and its schema name.
    pub success: (u16, &'static str),
    /// Whether it needs `authorization: Bearer`.
    pub bearer: bool,
    /// Whether it takes `page_size` and `page_token`.
    pub paged: bool,
    /// The error statuses it may answer.
    pub errors: &'static [u16],
}

/// Every operation of the JSON API.
pub const ROUTES: &[Operation] = &[
    Operation {
        method: "post",
        path: "/api/v1/users",
        summary: "Sign up",
        body: Some("NewUser"),
        success: (201, "UserResponse"),
        bearer: false,
        paged: false,
        errors: &[400, 409, 503, 504],
    },
    Operation {
        method: "post",
        path: "/api/v1/login",
        summary: "Log in: a token for email and password",
        body: Some("Login"),
        success: (200, "TokenResponse"),
        bearer: false,
        paged: false,
        errors: &[400, 401, 429, 503, 504],
    },
    Operation {
        method: "get",
        path: "/api/v1/me",
        summary: "The caller's profile",
        body: None,
        success: (200, "UserResponse"),
        bearer: true,
        paged: false,
        errors: &[401, 503, 504],
    },
    Operation {
        method: "post",
        path: "/api/v1/consignments",
        summary: "Ship a consignment on the smallest vessel with room left for it",
        body: Some("NewConsignment"),
        success: (201, "ConsignmentResponse"),
        bearer: true,
        paged: false,
        errors: &[400, 401, 404, 422, 503, 504],
    },
    Operation {
        method: "get",
        path: "/api/v1/consignments",
        summary: "The caller's consignments, newest first",
        body: None,
        success: (200, "ConsignmentPage"),
        bearer: true,
        paged: true,
        errors: &[400, 401, 503, 504],
    },
    Operation {
        method: "delete",
        path: "/api/v1/consignments/{id}",
        summary: "Cancel one of the caller's consignments; its room goes back to its vessel",
        body: None,
        success: (200, "ConsignmentResponse"),
        bearer: true,
        paged: false,
        errors: &[400, 401, 404, 422, 503, 504],
    },
    Operation {
        method: "post",
        path: "/api/v1/vessels",
        summary: "Add a vessel to the fleet (admins)",
        body: Some("NewVessel"),
        success: (201, "VesselResponse"),
        bearer: true,
        paged: false,
        errors: &[400, 401, 403, 409, 503, 504],
    },
    Operation {
        method: "get",
        path: "/api/v1/vessels",
        summary: "The fleet, ordered by id (any signed-in user)",
        body: None,
        success: (200, "VesselPage"),
        bearer: true,
        paged: true,
        errors: &[400, 401, 503, 504],
    },
];

fn string() -> Value {
    json!({"type": "string"})
}

fn int() -> Value {
    json!({"type": "integer", "format": "int32"})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn schemas() -> Value {
    let container = json!({"type": "object", "properties": {
        "id": string(), "customer_id": string(), "origin": string(), "user_id": string()}});
    json!({
        "NewUser": {"type": "object", "required": ["name", "email", "password"],
            "additionalProperties": false, "properties": {
            "name": string(), "email": string(), "company": string(), "password": string()}},
        "Login": {"type": "object", "required": ["email", "password"],
            "additionalProperties": false,
            "properties": {"email": string(), "password": string()}},
        "User": {"type": "object", "properties": {"id": string(), "name": string(),
            "company": string(), "email": string(),
            "created_at": {"type": "string", "format": "date-time"}}},
        "UserResponse": {"type": "object", "properties": {"user": reference("User")}},
        "TokenResponse": {"type": "object", "properties": {"token": string()}},
        "Container": container,
        "NewConsignment": {"type": "object", "required": ["description", "weight"],
            "additionalProperties": false, "properties": {"description": string(),
            "weight": int(), "containers": {"type": "array", "items": reference("Container")},
            "vessel_id": {"type": "string", "description":
                "ignored: the service picks the vessel (taken so the original's consignment.json is)"}}},
        "Consignment": {"type": "object", "properties": {"id": string(),
            "description": string(), "weight": int(),
            "containers": {"type": "array", "items": reference("Container")},
            "vessel_id": string(), "owner_id": string(),
            "created_at": {"type": "string", "format": "date-time"}}},
        "ConsignmentResponse": {"type": "object",
            "properties": {"consignment": reference("Consignment")}},
        "ConsignmentPage": {"type": "object", "properties": {
            "consignments": {"type": "array", "items": reference("Consignment")},
            "next_page_token": string()}},
        "NewVessel": {"type": "object", "required": ["name", "capacity", "max_weight"],
            "additionalProperties": false, "properties": {"id": string(), "name": string(),
            "capacity": int(), "max_weight": int(), "available": {"type": "boolean"},
            "owner_id": string()}},
        "Vessel": {"type": "object", "properties": {"id": string(), "name": string(),
            "capacity": int(), "max_weight": int(), "available": {"type": "boolean"},
            "owner_id": string(), "remaining_capacity": int(), "remaining_weight": int(),
            "used_capacity": int(), "used_weight": int()}},
        "VesselResponse": {"type": "object", "properties": {"vessel": reference("Vessel")}},
        "VesselPage": {"type": "object", "properties": {
            "vessels": {"type": "array", "items": reference("Vessel")},
            "next_page_token": string()}},
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "example": "INVALID_ARGUMENT"},
            "message": string()}}}},
    })
}

/// The whole document.
pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for op in ROUTES {
        let mut responses = serde_json::Map::new();
        responses.insert(
            op.success.0.to_string(),
            json!({"description": "success",
                "content": {"application/json": {"schema": reference(op.success.1)}}}),
        );
        // Every route may also be rate limited (429), find its service's
        // circuit open (503) or its service too slow (504).
        let mut statuses = op.errors.to_vec();
        statuses.extend([429, 503, 504]);
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            let mut response = json!({"description": "error",
                "content": {"application/json": {"schema": reference("Error")}}});
            let seconds = |description: &str| json!({"schema": {"type": "integer", "minimum": 0}, "description": description});
            match status {
                429 => {
                    response["headers"] = json!({
                        "Retry-After": seconds("seconds until a retry can succeed"),
                        "RateLimit-Limit": seconds("requests the client may send at once (draft-ietf-httpapi-ratelimit-headers-07)"),
                        "RateLimit-Remaining": seconds("requests left at once"),
                        "RateLimit-Reset": seconds("seconds until the whole allowance is back"),
                        "RateLimit-Policy": {"schema": {"type": "string"},
                            "description": "the allowance and the seconds it takes to refill, e.g. `40;w=2`"},
                    });
                }
                503 => {
                    response["headers"] = json!({"Retry-After": seconds(
                        "seconds until the service is tried again (its circuit is open)")});
                }
                _ => {}
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({"summary": op.summary, "responses": responses});
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true,
                "content": {"application/json": {"schema": reference(body)}}});
        }
        if op.bearer {
            operation["security"] = json!([{"bearer": []}]);
        }
        if op.paged {
            operation["parameters"] = json!([
                {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "page_token", "in": "query", "schema": {"type": "string"}},
            ]);
        }
        if op.path.contains("{id}") {
            operation["parameters"] =
                json!([{"name": "id", "in": "path", "required": true, "schema": string()}]);
        }
        let entry = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "shippy api-gateway", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}

/// `GET /api/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_the_edges_own_answers() {
        let document = build();
        for op in ROUTES {
            let responses = &document["paths"][op.path][op.method]["responses"];
            let limited = &responses["429"]["headers"];
            for header in [
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ] {
                assert!(
                    limited[header].is_object(),
                    "{} {}: 429 {header}",
                    op.method,
                    op.path
                );
            }
            assert!(
                responses["503"]["headers"]["Retry-After"].is_object(),
                "{} {}: 503 (open circuit) Retry-After",
                op.method,
                op.path
            );
            assert!(
                responses["504"].is_object(),
                "{} {}: 504",
                op.method,
                op.path
            );
            if op.bearer {
                assert!(
                    responses["401"].is_object(),
                    "{} {}: 401",
                    op.method,
                    op.path
                );
            }
        }
    }

    #[test]
    fn a_new_vessel_documents_only_the_fields_it_takes() {
        let properties = build()["components"]["schemas"]["NewVessel"]["properties"].clone();
        let mut names: Vec<_> = properties
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
    }
}
