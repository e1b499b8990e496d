//! CPU time of the processes a scenario involves, read from `/proc` before
//! and after a timed run: stable where throughput is not, on a shared machine.

use std::{collections::HashMap, fs, process::Command};

/// A process whose CPU time is measured: one pid, or a pid and everything it
/// started (PostgreSQL's postmaster and its backends).
#[derive(Debug, Clone)]
pub struct Watched {
    /// The name in the report (`consignment-service`, `postgres`, …).
    pub name: String,
    pub pid: u32,
    pub tree: bool,
}

/// `NAME=VALUE` split at its first `=`; `value` names VALUE in the error.
pub fn name_and_value<'a>(text: &'a str, value: &str) -> Result<(&'a str, &'a str), String> {
    text.split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME={value}"))
}

impl Watched {
    /// Parses `NAME=PID` (a tree when NAME ends in `+`, as in `postgres+=123`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, pid) = name_and_value(text, "PID")?;
        let pid = pid
            .parse()
            .map_err(|_| format!("`{pid}` in `{text}` is not a pid"))?;
        let (name, tree) = match name.strip_suffix('+') {
            Some(name) => (name, true),
            None => (name, false),
        };
        Ok(Self {
            name: name.to_owned(),
            pid,
            tree,
        })
    }
}

/// Clock ticks per second, the unit of `/proc/PID/stat`'s times.
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// One process's parent and CPU ticks (its own, and its reaped children's).
#[derive(Debug, Clone, Copy)]
struct Stat {
    parent: u32,
    own: u64,
    children: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: the fields
    // follow the last `)`, starting with the state (field 3).
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat {
        parent: u32::try_from(field(4)?).ok()?,
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

/// CPU ticks of every watched process now, by name.
pub fn sample(watched: &[Watched]) -> HashMap<String, u64> {
    let mut all: Option<HashMap<u32, Stat>> = None;
    watched
        .iter()
        .map(|process| {
            let ticks = if process.tree {
                let all = all.get_or_insert_with(every_process);
                tree_ticks(all, process.pid)
            } else {
                stat(process.pid).map_or(0, |stat| stat.own)
            };
            (process.name.clone(), ticks)
        })
        .collect()
}

fn every_process() -> HashMap<u32, Stat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Processes under a watched tree left out of it: PostgreSQL's autovacuum
/// runs when it likes (often just after the creations of another scenario),
/// so its CPU time would land on whichever run it overlaps.
const BACKGROUND: &[&str] = &["autovacuum"];

fn background(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|command| {
        let command = String::from_utf8_lossy(&command);
        BACKGROUND.iter().any(|name| command.contains(name))
    })
}

/// `root`'s ticks and those of every living process under it (their own
/// and their reaped children's), but for [`BACKGROUND`] ones. The root's
/// reaped children are left out too: which of them ended during a run (a
/// backend, an autovacuum worker) is not known.
fn tree_ticks(all: &HashMap<u32, Stat>, root: u32) -> u64 {
    let mut total = all.get(&root).map_or(0, |stat| stat.own);
    let mut pending: Vec<u32> = children(all, root);
    while let Some(pid) = pending.pop() {
        if background(pid) {
            continue;
        }
        if let Some(stat) = all.get(&pid) {
            total += stat.own + stat.children;
        }
        pending.extend(children(all, pid));
    }
    total
}

/// `root` and every living process under it (PostgreSQL's postmaster and
/// its backends, autovacuum included: they all hold memory).
pub fn tree_pids(root: u32) -> Vec<u32> {
    let all = every_process();
    let mut tree = vec![root];
    let mut pending = children(&all, root);
    while let Some(pid) = pending.pop() {
        tree.push(pid);
        pending.extend(children(&all, pid));
    }
    tree
}

fn children(all: &HashMap<u32, Stat>, parent: u32) -> Vec<u32> {
    all.iter()
        .filter(|(_, stat)| stat.parent == parent)
        .map(|(child, _)| *child)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_is_seen_using_cpu() {
        let me = Watched::parse(&format!("me={}", std::process::id())).unwrap();
        let tree = Watched::parse(&format!("tree+={}", std::process::id())).unwrap();
        assert!(tree.tree && !me.tree);
        let before = sample(&[me.clone(), tree.clone()]);
        // Spin until the samples show 10 ticks more (~100 ms at 100 Hz), or
        // give up after 20 s: on a busy machine the wall time it takes varies.
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        let mut after = sample(&[me.clone(), tree.clone()]);
        while after["me"] < before["me"] + 10 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "20 s of spinning never showed in /proc: {before:?} → {after:?}"
            );
            for _ in 0..1_000_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            after = sample(&[me.clone(), tree.clone()]);
        }
        assert!(after["tree"] >= after["me"], "{after:?}");
    }

    #[test]
    fn names_and_pids_are_parsed_or_refused() {
        assert!(Watched::parse("postgres+=12").unwrap().tree);
        assert_eq!(Watched::parse("echo=7").unwrap().pid, 7);
        assert!(Watched::parse("echo").is_err());
        assert!(Watched::parse("echo=x").is_err());
    }
}
