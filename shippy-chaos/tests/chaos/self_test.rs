//! The checker must be able to fail: a clean run holds every invariant;
//! then anomalies are injected behind the system's back — a consignment row
//! deleted, one stored for a create that was refused, room taken in the database directly, a
//! welcome mail sent twice by hand, a service down and a panic in a log —
//! and each must be reported as a violation, naming what broke.

use std::{io::Write as _, time::Duration};

use shippy_chaos::{
    checker::{Verdict, check},
    cluster::{ADMIN, Store},
    history::Kind,
    run::{Config, Soak},
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::common;

/// Sends one mail to `to` through the SMTP server at `address`, by hand.
async fn send_mail(address: &str, to: &str) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut expect = async |code: &str| {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server answers");
            assert!(line.starts_with(code), "SMTP: wanted {code}, got {line}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("220").await;
    for (command, code) in [
        ("EHLO chaos.test".to_owned(), "250"),
        ("MAIL FROM:<no-reply@shippy.example>".to_owned(), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_owned(), "354"),
        (
            format!(
                "From: no-reply@shippy.example\r\nTo: {to}\r\nSubject: Welcome to Shippy\r\n\r\nagain\r\n."
            ),
            "250",
        ),
    ] {
        write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        expect(code).await;
    }
    let _ = write.write_all(b"QUIT\r\n").await;
}

fn verdict<'a>(verdicts: &'a [Verdict], name: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|verdict| verdict.name == name)
        .unwrap()
}

fn mentions(verdict: &Verdict, what: &str) -> bool {
    verdict
        .counterexamples
        .iter()
        .any(|example| example.contains(what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invariant_fails_when_broken_behind_the_systems_back() {
    let _turn = common::one_at_a_time().await;
    shippy_testkit::init_test_logging();
    let out = common::out("self-test");
    let mut config = Config::new(Store::Postgres, common::seed(5), Duration::ZERO, out);
    config.calm = Duration::from_secs(4);
    let mut soak = Soak::start(config).await.expect("the cluster starts");
    soak.run().await;
    soak.quiesce().await;
    let history = soak.history();
    let observed = soak.observe().await.unwrap();
    let clean = check(&history, &observed);
    for verdict in &clean {
        assert!(
            verdict.holds(),
            "a clean run breaks {}: {:?}",
            verdict.name,
            verdict.counterexamples
        );
    }

    // Acknowledged creates and what became of them.
    let acknowledged: Vec<String> = history
        .iter()
        .filter(|entry| entry.op == "create" && entry.kind == Kind::Ok)
        .filter_map(|entry| entry.result["id"].as_str().map(str::to_owned))
        .collect();
    let state = |id: &str| {
        observed
            .snapshot
            .consignments
            .iter()
            .find(|consignment| consignment.id == id)
            .map(|consignment| consignment.state.clone())
    };
    let confirmed: Vec<&String> = acknowledged
        .iter()
        .filter(|id| state(id).as_deref() == Some("confirmed"))
        .collect();
    assert!(
        confirmed.len() >= 2,
        "the clean run confirmed too little: {confirmed:?}"
    );
    let deleted = confirmed[0].clone();
    // A create that failed definitively (the fleet has no room for it).
    let refused = history
        .iter()
        .find(|entry| entry.op == "create" && entry.kind == Kind::Fail)
        .expect("some create was refused (one in ten is larger than any vessel)");
    let refused_key = refused.args["key"].as_str().unwrap().to_owned();
    let refused_owner = observed.snapshot.users[refused.args["email"].as_str().unwrap()].clone();
    let phantom = uuid::Uuid::new_v4().to_string();
    // Room taken where there is some (or, on a full fleet, given back).
    let (vessel, taken) = observed
        .snapshot
        .fleet
        .vessels
        .iter()
        .find(|vessel| vessel.remaining_capacity > 0)
        .map(|vessel| (vessel.id.clone(), 1))
        .unwrap_or_else(|| (observed.snapshot.fleet.vessels[0].id.clone(), -1));
    let user = observed
        .snapshot
        .users
        .keys()
        .find(|email| *email != ADMIN)
        .unwrap()
        .clone();

    soak.view.delete_consignment(&deleted).await.unwrap();
    soak.view
        .insert_consignment(&phantom, &refused_owner, &refused_key, &vessel)
        .await
        .unwrap();
    soak.view.take_room(&vessel, taken).await.unwrap();
    let smtp = soak.cluster.smtp.url();
    send_mail(smtp.trim_start_matches("smtp://"), &user).await;
    let log = soak
        .cluster
        .logs()
        .into_iter()
        .find(|log| log.to_string_lossy().contains("consignment-service"))
        .unwrap();
    std::fs::File::options()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"thread 'tokio-runtime-worker' panicked at consignment-service/src/saga.rs:1:1: injected\n")
        .unwrap();
    soak.cluster.service_mut("email-service").unwrap().kill();
    soak.recheck_recovery(Duration::from_secs(2)).await;

    let observed = soak.observe().await.unwrap();
    let broken = check(&history, &observed);
    for verdict in &broken {
        println!("{}: {:?}", verdict.name, verdict.counterexamples);
    }
    let acknowledged = verdict(&broken, "acknowledged-creates");
    assert!(
        mentions(acknowledged, &format!("{deleted} (key")),
        "{acknowledged:?}"
    );
    assert!(mentions(acknowledged, "not stored"), "{acknowledged:?}");
    let failed = verdict(&broken, "failed-creates");
    assert!(
        mentions(failed, &format!("{phantom} (key {refused_key}")),
        "{failed:?}"
    );
    assert!(
        mentions(failed, "failed definitively, yet it is confirmed"),
        "{failed:?}"
    );
    let room = verdict(&broken, "vessel-room");
    assert!(mentions(room, &format!("vessel {vessel}")), "{room:?}");
    let mails = verdict(&broken, "welcome-mails");
    assert!(
        mentions(mails, &format!("{user}: 2 different welcome mails")),
        "{mails:?}"
    );
    let recovery = verdict(&broken, "recovery");
    assert!(
        mentions(recovery, "email-service: not ready"),
        "{recovery:?}"
    );
    assert!(mentions(recovery, "panicked at"), "{recovery:?}");
}
