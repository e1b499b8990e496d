//! The api-gateway's JSON API and web UI through compose, and a cancelled
//! consignment: gone from the list, its room back.

use anyhow::{Context, bail};
use serde_json::Value;

use super::shipment::{User, compose_run, url};
use super::{Run, print_tail, read_text};
use crate::http;

/// An HTTP call whose body goes to `what`'s log; fails (as `curl -f`) on an
/// error status, printing the log's tail.
fn http_logged(
    run: &Run,
    what: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<String> {
    super::interrupted()?;
    let log = run.log_file(what);
    let (text, failed) = match http::blocking(method, url, headers, body) {
        Ok(response) if response.status.as_u16() < 400 => (response.body, false),
        Ok(response) => (
            format!(
                "{}\nThe requested URL returned error: {}\n",
                response.body,
                response.status.as_u16()
            ),
            true,
        ),
        Err(error) => (format!("{error:#}\n"), true),
    };
    std::fs::write(&log, &text).with_context(|| format!("cannot write {}", log.display()))?;
    if failed {
        print_tail(&log, 30);
        bail!("{what} (log: {})", log.display());
    }
    Ok(text)
}

/// `GET path` of the gateway with `headers`, as [`http_logged`].
fn gateway_get(
    run: &Run,
    what: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<String> {
    let url = url(run, "SHIPPY_GATEWAY_PORT", path);
    http_logged(run, what, "GET", &url, headers, None)
}

/// The gateway's JSON API and web UI; the API token of a fresh login.
pub(super) fn gateway(run: &mut Run, user: &User) -> anyhow::Result<String> {
    run.step("the api-gateway: the JSON API and the web UI through compose");
    let credentials = serde_json::json!({ "email": user.email, "password": user.password });
    let answer = http_logged(
        run,
        "api-gateway login",
        "POST",
        &url(run, "SHIPPY_GATEWAY_PORT", "/api/v1/login"),
        &[("content-type", "application/json")],
        Some(&credentials.to_string()),
    )?;
    let token = serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|login| login["token"].as_str().map(str::to_owned))
        .context("the gateway's login answered no token")?;
    let bearer = format!("Bearer {token}");
    let consignments = gateway_get(
        run,
        "api-gateway consignments",
        "/api/v1/consignments",
        &[("authorization", &bearer)],
    )?;
    if !consignments.contains("\"vessel_id\"") {
        bail!("GET /api/v1/consignments through the gateway does not show the consignment");
    }
    let page = gateway_get(run, "api-gateway web UI", "/", &[])?;
    if !page.to_ascii_lowercase().contains("<html") {
        bail!("the gateway serves no web UI at /");
    }
    run.ok("api-gateway: POST /api/v1/login, GET /api/v1/consignments (the consignment), GET / (the web UI)");
    Ok(token)
}

/// The first consignment's id in consignment-cli's `--json list` output (the
/// pretty JSON array, among whatever docker compose printed around it).
fn first_consignment_id(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|line| *line == "[")?;
    let end = lines.iter().rposition(|line| *line == "]")?;
    let list: Value = serde_json::from_str(&lines.get(start..=end)?.join("\n")).ok()?;
    match &list[0]["id"] {
        Value::String(id) => Some(id.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

pub(super) fn cancel(run: &mut Run, token: &str) -> anyhow::Result<()> {
    run.step(
        "docker compose run --rm consignment-cli cancel ID: gone from the list, its room back",
    );
    let listed = read_text(&run.logs.join("consignment-cli-list.log"))?;
    let id =
        first_consignment_id(&listed).context("no consignment id in consignment-cli's list")?;
    let log = compose_run(
        run,
        "consignment-cli cancel",
        &["consignment-cli", "cancel", &id],
    )?;
    if !read_text(&log)?.contains(&format!("cancelled consignment {id}")) {
        bail!("consignment-cli cancel did not say it cancelled {id}");
    }
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let consignments = gateway_get(
        run,
        "api-gateway consignments after cancel",
        "/api/v1/consignments",
        &auth,
    )?;
    let vessels = gateway_get(
        run,
        "api-gateway vessels after cancel",
        "/api/v1/vessels",
        &auth,
    )?;
    if !cancelled_and_free(&consignments, &vessels) {
        bail!("the cancelled consignment is listed or still holds room");
    }
    run.ok("consignment-cli cancel: the consignment is gone and every vessel's room is free again");
    Ok(())
}

/// No consignment listed, and no vessel with room used.
fn cancelled_and_free(consignments: &str, vessels: &str) -> bool {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let none_listed = parse(consignments)["consignments"]
        .as_array()
        .is_some_and(Vec::is_empty);
    let vessels = parse(vessels);
    let free = vessels["vessels"].as_array().is_some_and(|list| {
        list.iter().all(|vessel| match &vessel["used_capacity"] {
            Value::Null | Value::Bool(false) => true,
            Value::Number(used) => used.as_f64() == Some(0.0),
            Value::String(used) => used.is_empty(),
            _ => false,
        })
    });
    none_listed && free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consignment_id_is_found_among_compose_output() {
        let text = "Creating …\n[\n  {\n    \"id\": \"c-1\"\n  }\n]\nDone\n";
        assert_eq!(first_consignment_id(text).as_deref(), Some("c-1"));
        assert_eq!(first_consignment_id("[]\n"), None);
    }

    #[test]
    fn a_cancelled_consignment_frees_its_room() {
        let vessels = r#"{"vessels": [{"id": "v", "used_capacity": 0}]}"#;
        assert!(cancelled_and_free(r#"{"consignments": []}"#, vessels));
        assert!(!cancelled_and_free(
            r#"{"consignments": [{"id": "c"}]}"#,
            vessels
        ));
        let used = r#"{"vessels": [{"id": "v", "used_capacity": 3}]}"#;
        assert!(!cancelled_and_free(r#"{"consignments": []}"#, used));
    }
}
