//! The checker: what the history says was promised, against what the
//! databases, the listings and the mail sink hold once the cluster has
//! quiesced.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::{
    history::{Entry, Kind},
    view::{Fleet, Snapshot, StoredConsignment},
};

/// What was observed after the run (and during it), to check the history
/// against.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    /// The databases, after quiescence.
    pub snapshot: Snapshot,
    /// Each user's listing through consignment-service (email → ids, or
    /// why it could not be had).
    pub listings: BTreeMap<String, Result<Vec<String>, String>>,
    /// Every mail the SMTP sink received.
    pub mails: Vec<ReceivedMail>,
    /// Fleet checks sampled during the run: (seconds, what was wrong).
    pub samples: Vec<(f64, Vec<String>)>,
    /// How long each service took to be ready after the last fault (none:
    /// not within the limit).
    pub recovery: BTreeMap<String, Option<f64>>,
    /// The limit, in seconds.
    pub recovery_limit: f64,
    /// Lines of the logs that tell of a panic (`file: line`).
    pub panics: Vec<String>,
}

/// A mail as the SMTP sink received it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceivedMail {
    /// The envelope's recipients.
    pub recipients: Vec<String>,
    /// Its `Message-ID` header, if it has one.
    pub message_id: Option<String>,
}

impl ReceivedMail {
    /// Reads a raw mail as the sink (aiosmtpd's `Mailbox`) stored it.
    pub fn parse(raw: &str) -> Self {
        let message_id = raw
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case("Message-ID")
                    .then(|| value.trim().to_owned())
            });
        Self {
            recipients: recipients(raw),
            message_id,
        }
    }
}

/// One invariant's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Its short name.
    pub name: &'static str,
    /// What it promises.
    pub promise: &'static str,
    /// How many things were checked.
    pub checked: usize,
    /// What breaks it (ids and what was wrong); empty when it holds.
    pub counterexamples: Vec<String>,
    /// What is worth knowing but allowed (a documented window was hit).
    pub notes: Vec<String>,
}

impl Verdict {
    /// Whether it holds.
    pub fn holds(&self) -> bool {
        self.counterexamples.is_empty()
    }
}

/// The invariants' names, in report order.
pub const INVARIANTS: [&str; 5] = [
    "acknowledged-creates",
    "failed-creates",
    "vessel-room",
    "welcome-mails",
    "recovery",
];

/// One create (all attempts with one idempotency key).
#[derive(Debug, Default)]
struct Create {
    email: String,
    ok_ids: BTreeSet<String>,
    fails: usize,
    indeterminate: usize,
}

/// What became of the cancels of one consignment.
#[derive(Debug, Default, Clone, Copy)]
struct Cancels {
    ok: bool,
    indeterminate: bool,
}

fn completions<'a>(history: &'a [Entry], op: &'a str) -> impl Iterator<Item = &'a Entry> {
    history.iter().filter(move |entry| {
        entry.op == op && matches!(entry.kind, Kind::Ok | Kind::Fail | Kind::Indeterminate)
    })
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// Checks `history` against `observed`; a verdict per invariant.
pub fn check(history: &[Entry], observed: &Observed) -> Vec<Verdict> {
    let mut creates: BTreeMap<String, Create> = BTreeMap::new();
    for entry in completions(history, "create") {
        let create = creates.entry(text(&entry.args, "key")).or_default();
        create.email = text(&entry.args, "email");
        match entry.kind {
            Kind::Ok => {
                create.ok_ids.insert(text(&entry.result, "id"));
            }
            Kind::Fail => create.fails += 1,
            _ => create.indeterminate += 1,
        }
    }
    let mut cancels: BTreeMap<String, Cancels> = BTreeMap::new();
    for entry in completions(history, "cancel") {
        let cancel = cancels.entry(text(&entry.args, "id")).or_default();
        match entry.kind {
            Kind::Ok => cancel.ok = true,
            Kind::Indeterminate => cancel.indeterminate = true,
            _ => {}
        }
    }
    let snapshot = &observed.snapshot;
    let by_id: BTreeMap<&str, &StoredConsignment> = snapshot
        .consignments
        .iter()
        .map(|consignment| (consignment.id.as_str(), consignment))
        .collect();
    let by_key: BTreeMap<(&str, &str), &StoredConsignment> = snapshot
        .consignments
        .iter()
        .filter_map(|consignment| {
            Some((
                (consignment.owner_id.as_str(), consignment.key.as_deref()?),
                consignment,
            ))
        })
        .collect();
    let email_of: BTreeMap<&str, &str> = snapshot
        .users
        .iter()
        .map(|(email, id)| (id.as_str(), email.as_str()))
        .collect();
    let listed = |email: &str, id: &str| -> Option<bool> {
        match observed.listings.get(email) {
            Some(Ok(ids)) => Some(ids.iter().any(|listed| listed == id)),
            _ => None,
        }
    };

    // 1. Every create acknowledged OK is stored, confirmed and listed —
    //    unless its owner cancelled it, then it is cancelled.
    let mut acknowledged = Verdict {
        name: INVARIANTS[0],
        promise: "every create acknowledged OK is stored, confirmed and listed to its owner \
                  (at the end, and in every listing they got after it), unless the owner \
                  cancelled it (then cancelled and not listed)",
        checked: 0,
        counterexamples: Vec::new(),
        notes: Vec::new(),
    };
    for (key, create) in &creates {
        if create.ok_ids.is_empty() {
            continue;
        }
        acknowledged.checked += 1;
        if create.ok_ids.len() > 1 {
            acknowledged.counterexamples.push(format!(
                "key {key}: one idempotency key answered several consignments {:?}",
                create.ok_ids
            ));
        }
        for id in &create.ok_ids {
            let Some(stored) = by_id.get(id.as_str()) else {
                acknowledged
                    .counterexamples
                    .push(format!("{id} (key {key}): acknowledged but not stored"));
                continue;
            };
            let cancel = cancels.get(id).copied().unwrap_or_default();
            let is_listed = listed(&create.email, id);
            let wrong = match (stored.state.as_str(), cancel.ok, cancel.indeterminate) {
                ("confirmed", false, _) if is_listed == Some(false) => {
                    Some("confirmed but not listed")
                }
                ("confirmed", false, _) => None,
                ("confirmed", true, _) => Some("cancelled OK but still confirmed"),
                ("cancelled", true, _) | ("cancelled", _, true) if is_listed == Some(true) => {
                    Some("cancelled but listed")
                }
                ("cancelled", true, _) | ("cancelled", _, true) => None,
                ("cancelled", false, false) => Some("cancelled though nobody cancelled it"),
                _ => Some("left half-done"),
            };
            if let Some(wrong) = wrong {
                acknowledged.counterexamples.push(format!(
                    "{id} (key {key}, {}): {wrong} (state {})",
                    create.email, stored.state
                ));
            }
            if email_of.get(stored.owner_id.as_str()) != Some(&create.email.as_str()) {
                acknowledged.counterexamples.push(format!(
                    "{id}: stored for owner {} instead of {}",
                    stored.owner_id, create.email
                ));
            }
        }
    }

    // ... and every listing its owner got after the acknowledgement (and
    // before asking to cancel it) shows it. Each client is sequential and
    // has its own accounts, so its history alone says what it must see.
    let mut live: BTreeMap<(&str, &str), BTreeMap<String, f64>> = BTreeMap::new();
    for entry in history {
        let process = entry.process.as_str();
        let email = entry.args["email"].as_str().unwrap_or_default();
        match (entry.op.as_str(), entry.kind) {
            ("create", Kind::Ok) => {
                live.entry((process, email))
                    .or_default()
                    .insert(text(&entry.result, "id"), entry.time);
            }
            ("cancel", Kind::Invoke) => {
                if let Some(ids) = live.get_mut(&(process, email)) {
                    ids.remove(&text(&entry.args, "id"));
                }
            }
            ("list", Kind::Ok) => {
                let shown: BTreeSet<&str> = entry.result["ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for (id, acknowledged_at) in live.get(&(process, email)).into_iter().flatten() {
                    if !shown.contains(id.as_str()) {
                        acknowledged.counterexamples.push(format!(
                            "{id} ({email}): acknowledged at {acknowledged_at:.1} s but missing \
                             from their listing at {:.1} s",
                            entry.time
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    // 2. No create that failed definitively is listed; indeterminate ones
    //    are confirmed or gone, never half-done; nothing is half-done.
    let mut failed = Verdict {
        name: INVARIANTS[1],
        promise: "no create that failed definitively is stored or listed; indeterminate ones are \
                  either, never left pending/cancelling; every listing is exactly its owner's \
                  confirmed consignments",
        checked: 0,
        counterexamples: Vec::new(),
        notes: Vec::new(),
    };
    for (key, create) in &creates {
        if !create.ok_ids.is_empty() {
            continue;
        }
        failed.checked += 1;
        let Some(owner) = snapshot.users.get(&create.email) else {
            continue;
        };
        if let Some(stored) = by_key.get(&(owner.as_str(), key.as_str())) {
            let definite = create.indeterminate == 0;
            if definite && stored.state != "cancelled" {
                failed.counterexamples.push(format!(
                    "{} (key {key}, {}): the create failed definitively, yet it is {}",
                    stored.id, create.email, stored.state
                ));
            }
        }
    }
    for consignment in &snapshot.consignments {
        if matches!(consignment.state.as_str(), "pending" | "cancelling") {
            failed.counterexamples.push(format!(
                "{} (key {}): left {} after quiescence",
                consignment.id,
                consignment.key.as_deref().unwrap_or("-"),
                consignment.state
            ));
        }
    }
    for (email, listing) in &observed.listings {
        let Ok(ids) = listing else { continue };
        failed.checked += 1;
        let owner = snapshot
            .users
            .get(email)
            .map(String::as_str)
            .unwrap_or_default();
        let confirmed: BTreeSet<&str> = snapshot
            .consignments
            .iter()
            .filter(|consignment| consignment.owner_id == owner && consignment.state == "confirmed")
            .map(|consignment| consignment.id.as_str())
            .collect();
        let shown: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        for id in shown.difference(&confirmed) {
            failed.counterexamples.push(format!(
                "{id} ({email}): listed but not a confirmed consignment of theirs"
            ));
        }
        for id in confirmed.difference(&shown) {
            failed.counterexamples.push(format!(
                "{id} ({email}): confirmed but missing from the listing"
            ));
        }
        if shown.len() != ids.len() {
            failed
                .counterexamples
                .push(format!("{email}: a consignment listed twice"));
        }
    }

    // 3. Every vessel's used room is the sum of its confirmed consignments,
    //    within its size — at the end and in every sample.
    let mut room = Verdict {
        name: INVARIANTS[2],
        promise: "every vessel: used room = the sum of its confirmed consignments, never over \
                  capacity or weight (sampled during the run too)",
        checked: snapshot.fleet.vessels.len() + observed.samples.len(),
        counterexamples: fleet_violations(&snapshot.fleet, Some(&snapshot.consignments)),
        notes: Vec::new(),
    };
    for (time, wrong) in &observed.samples {
        for wrong in wrong {
            room.counterexamples
                .push(format!("at {time:.1} s: {wrong}"));
        }
    }

    // 4. Every user gets exactly one welcome mail.
    let mut mails = Verdict {
        name: INVARIANTS[3],
        promise: "every user created gets exactly one welcome mail: none lost, none twice",
        checked: snapshot.users.len(),
        counterexamples: Vec::new(),
        notes: Vec::new(),
    };
    // Per recipient: each message (by Message-ID; one without is a message
    // of its own) and how many times it came.
    let mut received: BTreeMap<String, Vec<(Option<&str>, usize)>> = BTreeMap::new();
    for mail in &observed.mails {
        for recipient in &mail.recipients {
            let messages = received.entry(recipient.to_lowercase()).or_default();
            let id = mail.message_id.as_deref();
            match messages
                .iter_mut()
                .find(|(seen, _)| id.is_some() && *seen == id)
            {
                Some((_, times)) => *times += 1,
                None => messages.push((id, 1)),
            }
        }
    }
    for email in snapshot.users.keys() {
        let messages = received.get(email).map(Vec::as_slice).unwrap_or_default();
        match messages {
            [] => mails
                .counterexamples
                .push(format!("{email}: no welcome mail")),
            [(_, 1)] => {}
            [(id, times)] => mails.notes.push(format!(
                "{email}: the same message {} delivered {times} times (the documented window: \
                 email-service killed between the SMTP server's acceptance and its sent record)",
                id.unwrap_or("-")
            )),
            more => mails
                .counterexamples
                .push(format!("{email}: {} different welcome mails", more.len())),
        }
    }
    for (recipient, messages) in &received {
        if !snapshot.users.contains_key(recipient) {
            mails.counterexamples.push(format!(
                "{recipient}: {} mail(s) to no user",
                messages.iter().map(|(_, times)| times).sum::<usize>()
            ));
        }
    }
    for entry in completions(history, "signup").filter(|entry| entry.kind == Kind::Ok) {
        let email = text(&entry.args, "email");
        if !snapshot.users.contains_key(&email) {
            mails
                .counterexamples
                .push(format!("{email}: signed up OK but not stored"));
        }
    }

    // 5. Every service is ready again in time; nothing panicked.
    let mut recovery = Verdict {
        name: INVARIANTS[4],
        promise: "every service answers SERVING/ready within the limit after the last fault; no \
                  panic in any log",
        checked: observed.recovery.len(),
        counterexamples: Vec::new(),
        notes: Vec::new(),
    };
    for (service, took) in &observed.recovery {
        if took.is_none() {
            recovery.counterexamples.push(format!(
                "{service}: not ready within {:.0} s of the last fault",
                observed.recovery_limit
            ));
        }
    }
    recovery
        .counterexamples
        .extend(observed.panics.iter().cloned());

    vec![acknowledged, failed, room, mails, recovery]
}

/// What is wrong with the fleet: room out of range, used room that is not
/// the reservations' sum; with `consignments`, also not the confirmed
/// consignments' sum, and holds left over.
pub fn fleet_violations(fleet: &Fleet, consignments: Option<&[StoredConsignment]>) -> Vec<String> {
    let mut wrong = Vec::new();
    for vessel in &fleet.vessels {
        let id = &vessel.id;
        if !(0..=vessel.capacity).contains(&vessel.remaining_capacity)
            || !(0..=vessel.max_weight).contains(&vessel.remaining_weight)
        {
            wrong.push(format!(
                "vessel {id}: remaining {} containers / {} weight outside its size {} / {}",
                vessel.remaining_capacity,
                vessel.remaining_weight,
                vessel.capacity,
                vessel.max_weight
            ));
        }
        let used = (
            vessel.capacity - vessel.remaining_capacity,
            vessel.max_weight - vessel.remaining_weight,
        );
        let reserved = fleet
            .reservations
            .iter()
            .filter(|reservation| &reservation.vessel_id == id)
            .fold((0, 0), |(c, w), reservation| {
                (c + reservation.capacity, w + reservation.weight)
            });
        if used != reserved {
            wrong.push(format!(
                "vessel {id}: used {used:?} (containers, weight) but its reservations sum to {reserved:?}"
            ));
        }
        let Some(consignments) = consignments else {
            continue;
        };
        let confirmed: Vec<&StoredConsignment> = consignments
            .iter()
            .filter(|consignment| &consignment.vessel_id == id && consignment.state == "confirmed")
            .collect();
        let shipped = confirmed.iter().fold((0, 0), |(c, w), consignment| {
            (c + consignment.containers, w + consignment.weight)
        });
        if used != shipped {
            wrong.push(format!(
                "vessel {id}: used {used:?} (containers, weight) but its confirmed consignments sum to {shipped:?}"
            ));
        }
        let held: Vec<&str> = fleet
            .reservations
            .iter()
            .filter(|reservation| &reservation.vessel_id == id && !reservation.confirmed)
            .map(|reservation| reservation.id.as_str())
            .collect();
        if !held.is_empty() {
            wrong.push(format!(
                "vessel {id}: holds left after quiescence: {held:?}"
            ));
        }
        let reserved_ids: BTreeSet<&str> = fleet
            .reservations
            .iter()
            .filter(|reservation| &reservation.vessel_id == id && reservation.confirmed)
            .map(|reservation| reservation.id.as_str())
            .collect();
        let confirmed_ids: BTreeSet<&str> = confirmed
            .iter()
            .map(|consignment| consignment.id.as_str())
            .collect();
        for id in reserved_ids.symmetric_difference(&confirmed_ids) {
            wrong.push(format!(
                "{id}: a confirmed reservation without a confirmed consignment, or the reverse"
            ));
        }
    }
    wrong
}

/// The recipients of a raw mail as the sink (aiosmtpd's `Mailbox`) stored
/// it: its `X-RcptTo` header, the envelope's recipients.
pub fn recipients(mail: &str) -> Vec<String> {
    mail.lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.strip_prefix("X-RcptTo:"))
        .flat_map(|list| list.split(','))
        .map(|recipient| recipient.trim().trim_matches(['<', '>']).to_lowercase())
        .filter(|recipient| !recipient.is_empty())
        .collect()
}

/// Operations by kind and outcome: op → outcome → count.
pub fn outcomes(history: &[Entry]) -> BTreeMap<String, BTreeMap<&'static str, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for entry in history.iter().filter(|entry| entry.process != "nemesis") {
        let outcome = match entry.kind {
            Kind::Ok => "ok",
            Kind::Fail => "fail",
            Kind::Indeterminate => "indeterminate",
            _ => continue,
        };
        *counts
            .entry(format!("{} ({})", entry.op, entry.via))
            .or_default()
            .entry(outcome)
            .or_default() += 1;
    }
    counts
}

/// Faults by kind and target: kind → target → count.
pub fn faults(history: &[Entry]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for entry in history
        .iter()
        .filter(|entry| entry.kind == Kind::FaultStart)
    {
        *counts
            .entry(entry.op.clone())
            .or_default()
            .entry(entry.via.clone())
            .or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests;
