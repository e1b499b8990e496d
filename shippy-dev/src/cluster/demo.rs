//! `make demo`: start the cluster, walk through a user's first shipment
//! (user-cli, consignment-cli, the JSON API), show the welcome mail, stop.
//! Every step checks what it got; the first that does not fails the demo.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use super::up::{Cluster, Options, up};
use super::{Session, Store, env_var, http, say};
use crate::repo;

/// How demo and dev want the cluster: `SHIPPY_PROFILE`, `BCRYPT_COST`
/// (default 10), `ADMIN_EMAILS` (default admin@example.com).
pub(crate) fn options() -> Options {
    Options {
        profile: match env_var("SHIPPY_PROFILE").as_deref() {
            Some("release") => "release",
            _ => "debug",
        },
        bcrypt_cost: env_var("BCRYPT_COST").unwrap_or_else(|| "10".into()),
        admin_emails: env_var("ADMIN_EMAILS").unwrap_or_else(|| "admin@example.com".into()),
        env: Vec::new(),
        cold_start_clock: false,
    }
}

pub(crate) async fn run(session: &mut Session, store: Store) -> anyhow::Result<()> {
    let options = options();
    let cluster = up(session, store, &options).await?;
    let email = format!("ewan+{}@example.com", std::process::id());
    let password = "correct horse battery";
    let cli = |program: &str| {
        let mut command = Command::new(cluster.bin.join(program));
        command
            .envs(cluster.cli_env())
            .current_dir(repo())
            .kill_on_drop(true);
        command
    };

    say("user-cli create: a new account");
    let status = cli("user-cli")
        .args(["create", "--name", "Ewan Valentine", "--email", &email])
        .args(["--company", "Shippy", "--password", password])
        .status()
        .await;
    if !status.is_ok_and(|status| status.success()) {
        bail!("user-cli create");
    }

    say("user-cli login: a token, saved for the other commands");
    let login = cli("user-cli")
        .args(["login", "--email", &email, "--password", password])
        .stdout(std::process::Stdio::null())
        .status()
        .await;
    if !login.is_ok_and(|status| status.success()) {
        bail!("user-cli login");
    }
    let token_file = cluster.config_dir.join("token");
    if std::fs::metadata(&token_file).map_or(true, |file| file.len() == 0) {
        bail!("the token was not saved");
    }
    println!("    token saved to {}", token_file.display());

    say("consignment-cli create consignment.json");
    let created = output(cli("consignment-cli").args(["create", "consignment.json"]))
        .await
        .context("consignment-cli create")?;
    println!("{created}");
    if !created.contains("on vessel vessel") {
        bail!("the consignment has no vessel");
    }

    say("consignment-cli list");
    let listed = output(cli("consignment-cli").arg("list"))
        .await
        .context("consignment-cli list")?;
    println!("{listed}");
    if !listed.contains("This is a test consignment") {
        bail!("the consignment is not listed");
    }

    json_api(&cluster, &email, password).await?;
    welcome_mail(&cluster.maildir, &email, &session.run).await?;

    say("every step did what it should; stopping everything");
    Ok(())
}

/// What `command` printed, if it succeeded (without the last newline).
async fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        bail!("it failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// Logs in through the api-gateway and lists the consignment there.
async fn json_api(cluster: &Cluster, email: &str, password: &str) -> anyhow::Result<()> {
    let gateway = cluster.gateway_url();
    say(&format!(
        "the JSON API: api-gateway at {gateway} (the web UI is at {gateway}/)"
    ));
    let login = serde_json::json!({ "email": email, "password": password });
    let answer = http::post_json(&format!("{gateway}/api/v1/login"), &login)
        .await
        .and_then(|answer| answer.ok("POST /api/v1/login"))
        .context("POST /api/v1/login")?;
    let token = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|body| body.get("token")?.as_str().map(str::to_owned))
        .context("POST /api/v1/login answered no token")?;
    println!("    POST {gateway}/api/v1/login -> a token");
    let bearer = format!("Bearer {token}");
    let answer = http::get(
        &format!("{gateway}/api/v1/consignments?page_size=5"),
        &[("authorization", &bearer)],
    )
    .await
    .and_then(|answer| answer.ok("GET /api/v1/consignments"))
    .context("GET /api/v1/consignments")?;
    println!("    GET  {gateway}/api/v1/consignments -> {answer}");
    if !answer.contains("\"This is a test consignment\"") {
        bail!("the API does not list the consignment");
    }
    Ok(())
}

/// Waits (up to 30 s) for the welcome mail to `email`, shows it decoded
/// (headers and the plain-text part) and checks it is the welcome mail.
async fn welcome_mail(maildir: &Path, email: &str, run: &Path) -> anyhow::Result<()> {
    say("the welcome mail, as the SMTP server received it");
    let mut mail = None;
    for _ in 0..150 {
        mail = first_mail(maildir);
        if mail.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mail =
        mail.with_context(|| format!("no welcome mail arrived (logs: {})", run.display()))?;
    let shown = show(&mail).context("the mail could not be decoded")?;
    println!("{shown}");
    if !(shown.contains(email) && shown.contains("Hi Ewan Valentine")) {
        bail!("the mail is not the welcome mail for {email}");
    }
    Ok(())
}

/// The first mail (by file name) in `maildir/new`, raw.
fn first_mail(maildir: &Path) -> Option<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(maildir.join("new"))
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .collect();
    paths.sort();
    std::fs::read(paths.first()?).ok()
}

/// From, To, Subject and Date, a blank line and the plain-text part.
fn show(raw: &[u8]) -> Option<String> {
    let message = mail_parser::MessageParser::default().parse(raw)?;
    let addresses = |address: Option<&mail_parser::Address<'_>>| {
        address
            .map(|address| {
                address
                    .iter()
                    .map(|addr| {
                        let at = addr.address.as_deref().unwrap_or_default();
                        match addr.name.as_deref() {
                            Some(name) => format!("{name} <{at}>"),
                            None => at.to_owned(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    Some(format!(
        "From: {}\nTo: {}\nSubject: {}\nDate: {}\n\n{}",
        addresses(message.from()),
        addresses(message.to()),
        message.subject().unwrap_or_default(),
        // As written (Python's email package showed it so too).
        message.header_raw("Date").unwrap_or_default().trim(),
        message.body_text(0)?.trim(),
    ))
}

#[cfg(test)]
mod tests {
    /// The welcome mail as lettre sends it: multipart/alternative, the
    /// plain part quoted-printable with soft line breaks.
    const MAIL: &str = "From: Shippy <no-reply@shippy.example>\r\n\
To: Ewan Valentine <ewan+1@example.com>\r\n\
Subject: Welcome to Shippy\r\n\
Date: Sun, 06 Dec 2026 12:01:26 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Hi Ewan Valentine,\r\n\
\r\n\
welcome to Shippy! Your account for ewan+1@example.com is ready: log in wi=\r\n\
th `user-cli login --email ewan+1@example.com` =E2=80=94 and ship.\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hi Ewan Valentine,</p>\r\n\
--b1--\r\n";

    #[test]
    fn the_mail_is_shown_decoded_headers_then_the_plain_part() {
        let shown = super::show(MAIL.as_bytes()).unwrap_or_default();
        assert!(
            shown.starts_with(
                "From: Shippy <no-reply@shippy.example>\nTo: Ewan Valentine <ewan+1@example.com>\n\
                 Subject: Welcome to Shippy\nDate: Sun, 06 Dec 2026 12:01:26 +0000\n\nHi Ewan Valentine,"
            ),
            "{shown}"
        );
        assert!(
            shown.contains(
                "log in with `user-cli login --email ewan+1@example.com` \u{2014} and ship."
            ),
            "{shown}"
        );
        assert!(!shown.contains("<p>"), "{shown}");
    }
}
