//! What a user does: `up --wait`, Consul's ACLs, the first shipment through
//! the CLIs, the welcome mail, the spans, a restart, the api-gateway, a
//! cancellation, and a signing key rotated and revoked.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Run, output_to, print_file, print_tail, read_text, trimmed_stdout};
use crate::http;
use crate::process::spare_ports;

/// The published ports, each moved to a spare one.
const PORTS: [&str; 11] = [
    "SHIPPY_MONGO_PORT",
    "SHIPPY_POSTGRES_PORT",
    "SHIPPY_NATS_PORT",
    "SHIPPY_CONSUL_PORT",
    "SHIPPY_JAEGER_UI_PORT",
    "SHIPPY_MAIL_UI_PORT",
    "SHIPPY_VESSEL_PORT",
    "SHIPPY_USER_PORT",
    "SHIPPY_CONSIGNMENT_PORT",
    "SHIPPY_EMAIL_PORT",
    "SHIPPY_GATEWAY_PORT",
];

/// Steps 5 and 6, from `up` to the revoked key.
pub(super) fn walk(run: &mut Run) -> anyhow::Result<()> {
    up(run)?;
    consul_acls(run)?;
    let user = User {
        email: format!("first-{}@example.com", unix_seconds()),
        name: "Ewan".into(),
        password: "correct horse battery".into(),
    };
    let user_id = first_shipment(run, &user)?;
    mail_and_spans(run, &user)?;
    restart(run, &user, &user_id)?;
    let token = super::gateway::gateway(run, &user)?;
    super::gateway::cancel(run, &token)?;
    rotate_keys(run, &user)
}

#[derive(Debug)]
pub(super) struct User {
    pub(super) email: String,
    name: String,
    pub(super) password: String,
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn port(run: &Run, name: &str) -> String {
    run.env_value(name)
        .map(|value| value.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn url(run: &Run, port_name: &str, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", port(run, port_name))
}

fn up(run: &mut Run) -> anyhow::Result<()> {
    run.step("docker compose up -d --wait");
    for (name, port) in PORTS.iter().zip(spare_ports::<{ PORTS.len() }>()?) {
        run.set_env(name, port.to_string());
    }
    run.compose_up = true;
    let _ = run
        .compose(&["--profile", "cli", "down", "-v", "--remove-orphans"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    super::interrupted()?;
    let started = Instant::now();
    let log = run.logs.join("up.log");
    let mut up = run.compose(&["up", "-d", "--wait", "--wait-timeout", "300"]);
    if !output_to(&mut up, &log, None, None)? {
        print_tail(&log, 40);
        bail!("docker compose up -d --wait (log: {})", log.display());
    }
    run.ok(&format!(
        "every service healthy (or running, where it has no healthcheck) in {}s",
        started.elapsed().as_secs()
    ));
    let _ = run
        .compose(&["ps", "--format", "table {{.Service}}\t{{.Status}}"])
        .stdout(std::io::stderr())
        .status();
    Ok(())
}

/// `$CONSUL_HTTP_TOKEN` inside `service`'s container.
fn container_token(run: &Run, service: &str) -> Option<String> {
    let exec = run.compose(&[
        "exec",
        "-T",
        service,
        "sh",
        "-c",
        "echo \"$CONSUL_HTTP_TOKEN\"",
    ]);
    trimmed_stdout(exec, Stdio::inherit())
}

fn consul_acls(run: &mut Run) -> anyhow::Result<()> {
    run.step("Consul: ACLs on; only a service's own token registers its name");
    let management =
        container_token(run, "consul").context("the consul container has no CONSUL_HTTP_TOKEN")?;
    let email_token =
        container_token(run, "email-service").context("email-service has no CONSUL_HTTP_TOKEN")?;
    let register = url(run, "SHIPPY_CONSUL_PORT", "/v1/agent/service/register");
    let impostor =
        r#"{"ID": "impostor", "Name": "vessel-service", "Address": "127.0.0.1", "Port": 9}"#;
    for token in ["", email_token.as_str()] {
        let headers: &[(&str, &str)] = if token.is_empty() {
            &[]
        } else {
            &[("X-Consul-Token", token)]
        };
        let (code, body) = match http::blocking("PUT", &register, headers, Some(impostor)) {
            Ok(response) => (response.status.as_u16().to_string(), response.body),
            Err(error) => ("000".to_owned(), format!("{error:#}\n")),
        };
        let _ = std::fs::write(run.logs.join("consul-impostor.log"), body);
        if code != "403" {
            let who = if token.is_empty() {
                "no token"
            } else {
                "email-service's token"
            };
            bail!("Consul answered {code}, not 403, to a vessel-service registration with {who}");
        }
    }
    for service in shippy_testkit::CONSUL_SERVICES {
        let health = url(
            run,
            "SHIPPY_CONSUL_PORT",
            &format!("/v1/health/service/{service}?passing=true"),
        );
        let mut passing = false;
        for _ in 0..60 {
            super::interrupted()?;
            if http::blocking_get_ok(&health, &[("X-Consul-Token", &management)])
                .is_ok_and(|body| body.contains("\"ServiceID\""))
            {
                passing = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        if !passing {
            bail!(
                "{service} is not registered and passing in Consul (its token? see: compose logs consul-acl {service})"
            );
        }
    }
    run.ok("Consul refuses vessel-service's name without its token (403); all five services registered and passing with theirs");
    Ok(())
}

/// Runs `docker compose run --rm -T ARGS…` with its output in `what`'s log.
pub(super) fn compose_run(
    run: &Run,
    what: &str,
    args: &[&str],
) -> anyhow::Result<std::path::PathBuf> {
    let command = run.compose(&[&["run", "--rm", "-T"], args].concat());
    run.run_logged(what, command)
}

/// Step `step`: [`compose_run`], its output shown; its log.
fn shown_step(
    run: &mut Run,
    step: &str,
    what: &str,
    args: &[&str],
) -> anyhow::Result<std::path::PathBuf> {
    run.step(step);
    let log = compose_run(run, what, args)?;
    print_file(&log);
    Ok(log)
}

/// user-cli create and login, consignment-cli create and list; the user's id.
fn first_shipment(run: &mut Run, user: &User) -> anyhow::Result<String> {
    let created = shown_step(
        run,
        "docker compose run --rm user-cli create",
        "user-cli create",
        &[
            "user-cli",
            "create",
            "--name",
            &user.name,
            "--email",
            &user.email,
            "--password",
            &user.password,
        ],
    )?;
    let user_id =
        user_id_in(&read_text(&created)?).context("user-cli create printed no user id")?;
    run.ok(&format!("user-cli create {} (id {user_id})", user.email));

    run.step("docker compose run --rm user-cli login");
    login(run, "user-cli login", user)?;
    run.ok("user-cli login: token saved on the cli-config volume");

    shown_step(
        run,
        "docker compose run --rm consignment-cli create consignment.json",
        "consignment-cli create",
        &["consignment-cli", "create", "consignment.json"],
    )?;
    run.ok("consignment-cli create");

    let log = shown_step(
        run,
        "docker compose run --rm consignment-cli list",
        "consignment-cli list",
        &["consignment-cli", "--json", "list"],
    )?;
    let sample: Value = serde_json::from_str(&read_text(&run.repo.join("consignment.json"))?)
        .context("consignment.json is not JSON")?;
    let description = sample["description"].as_str().unwrap_or_default();
    if description.is_empty() || !read_text(&log)?.contains(description) {
        bail!("the list does not show the sample consignment");
    }
    run.ok("consignment-cli list shows the sample consignment");
    Ok(user_id)
}

fn login(run: &Run, what: &str, user: &User) -> anyhow::Result<()> {
    let log = compose_run(
        run,
        what,
        &[
            "user-cli",
            "login",
            "--email",
            &user.email,
            "--password",
            &user.password,
        ],
    )?;
    if what == "user-cli login" {
        print_file(&log);
    }
    Ok(())
}

/// The id after "with id " in user-cli create's output.
fn user_id_in(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("with id ")?;
    let id: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || ('a'..='f').contains(c) || *c == '-')
        .collect();
    (!id.is_empty()).then_some(id)
}

fn mail_and_spans(run: &mut Run, user: &User) -> anyhow::Result<()> {
    run.step("the welcome mail reached the mail container");
    let messages = url(run, "SHIPPY_MAIL_UI_PORT", "/api/v1/messages");
    let what = format!("no mail to {} in the mail container", user.email);
    run.until_ok(60, &what, |_| mail_arrived(&messages, &user.email))?;
    print_file(&run.logs.join("until.log"));
    run.ok(&format!("mail to {} in the mail container", user.email));

    run.step("spans reached the tracing container");
    let services = url(run, "SHIPPY_JAEGER_UI_PORT", "/api/services");
    run.until_ok(
        60,
        "the tracing container did not receive spans of every service",
        |_| spans_arrived(&services),
    )?;
    print_file(&run.logs.join("until.log"));
    run.ok("spans from every service in the tracing container");
    Ok(())
}

/// `GET url`'s JSON body, or what to log instead.
fn get_json(url: &str) -> Result<Value, String> {
    let answer = http::blocking_get_ok(url, &[]).map_err(|error| format!("{error:#}\n"))?;
    serde_json::from_str(&answer).map_err(|_| format!("not JSON: {answer}\n"))
}

/// The items of the JSON array `value[key]` (none if it is no array).
fn items<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value[key].as_array().into_iter().flatten()
}

/// Whether the mail container holds a message to `email` (and the first one).
fn mail_arrived(messages: &str, email: &str) -> (bool, String) {
    get_json(messages).map_or_else(
        |said| (false, said),
        |list| {
            let hits: Vec<&Value> = items(&list, "messages")
                .filter(|message| items(message, "To").any(|to| to["Address"] == email))
                .take(1)
                .collect();
            let shown = serde_json::to_string(&hits).unwrap_or_default();
            (!hits.is_empty(), format!("{shown}\n"))
        },
    )
}

/// Whether the tracing container has spans of the four services.
fn spans_arrived(services_url: &str) -> (bool, String) {
    get_json(services_url).map_or_else(
        |said| (false, said),
        |list| {
            let services: Vec<&str> = items(&list, "data").filter_map(Value::as_str).collect();
            let shown: Vec<String> = services.iter().map(|name| format!("'{name}'")).collect();
            let all = [
                "consignment-service",
                "vessel-service",
                "user-service",
                "email-service",
            ]
            .iter()
            .all(|wanted| services.contains(wanted));
            (all, format!("[{}]\n", shown.join(", ")))
        },
    )
}

fn restart(run: &mut Run, user: &User, user_id: &str) -> anyhow::Result<()> {
    run.step("restart user-service; the saved token still works");
    run.run_logged(
        "restart user-service",
        run.compose(&["restart", "user-service"]),
    )?;
    run.run_logged(
        "wait for user-service",
        run.compose(&[
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            "120",
            "user-service",
        ]),
    )?;
    // user-service checks the token with its own key (no cached public key):
    // reading one's own profile works only if the key survived the restart.
    let log = compose_run(
        run,
        "user-cli get after restart",
        &["user-cli", "get", user_id],
    )?;
    print_file(&log);
    if !read_text(&log)?.contains(&user.email) {
        bail!("user-cli get did not show {}", user.email);
    }
    compose_run(
        run,
        "consignment-cli list after restart",
        &["consignment-cli", "list"],
    )?;
    run.ok(
        "the token saved before the restart is still accepted (user-cli get, consignment-cli list)",
    );
    Ok(())
}

fn rotate_keys(run: &mut Run, user: &User) -> anyhow::Result<()> {
    run.step("rotate the signing key on the jwt-keys volume, revoke the old one: the saved token fails, a new login works");
    let key_file = "/keys/jwt-signing-key.pem";
    let keys = |args: &[&str]| {
        run.compose(
            &[
                &["exec", "-T", "user-service", "user-service", "keys"],
                args,
            ]
            .concat(),
        )
    };
    let log = run.run_logged("keys list", keys(&["list", "--file", key_file]))?;
    let old_kid = read_text(&log)?
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .context("user-service keys list printed no key")?;
    run.run_logged("keys rotate", keys(&["rotate", "--file", key_file]))?;
    run.run_logged(
        "keys revoke",
        keys(&["revoke", "--kid", &old_kid, "--file", key_file]),
    )?;
    // Within KEYS_REFRESH_INTERVAL (30 s) and user-service's reload (1 s).
    run.until_ok(
        60,
        "the saved token still works after its key was revoked",
        saved_token_refused,
    )?;
    print_file(&run.logs.join("until.log"));
    login(run, "user-cli login after revocation", user)?;
    compose_run(
        run,
        "consignment-cli list after revocation",
        &["consignment-cli", "list"],
    )?;
    run.ok(&format!(
        "key {old_kid} revoked without a restart: the saved token is refused, a new login's token works"
    ));
    Ok(())
}

/// Whether the CLI's saved token is refused now (UNAUTHENTICATED).
fn saved_token_refused(run: &Run) -> (bool, String) {
    let output = run
        .compose(&["run", "--rm", "-T", "consignment-cli", "list"])
        .stdin(Stdio::null())
        .output();
    let Ok(output) = output else {
        return (false, "cannot run docker compose\n".into());
    };
    if output.status.success() {
        return (false, String::new());
    }
    let said = [output.stdout, output.stderr].concat();
    let said = String::from_utf8_lossy(&said).into_owned();
    let lower = said.to_lowercase();
    let refused = ["unknown key", "unauthenticated", "log in"]
        .iter()
        .any(|sign| lower.contains(sign));
    (refused, said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_id_follows_with_id() {
        assert_eq!(
            user_id_in("created user Ewan with id 0b6f-9a1c2d\n").as_deref(),
            Some("0b6f-9a1c2d")
        );
        assert_eq!(user_id_in("created user Ewan\n"), None);
    }
}
