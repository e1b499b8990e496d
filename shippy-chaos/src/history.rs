//! The history: every operation's invoke and completion, and every fault
//! the nemesis starts and ends, with timestamps, as JSON lines.

use std::{
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::{Deserialize, Serialize};

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An operation was sent.
    Invoke,
    /// It succeeded.
    Ok,
    /// It failed definitively: nothing was done.
    Fail,
    /// It timed out or lost its connection: it may or may not have happened.
    Indeterminate,
    /// The nemesis started a fault.
    FaultStart,
    /// The nemesis ended a fault.
    FaultEnd,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the run began.
    pub time: f64,
    /// The client (`c3`), or `nemesis`.
    pub process: String,
    /// The operation's sequence number within its process (invoke and
    /// completion share it).
    pub seq: u64,
    /// What happened.
    pub kind: Kind,
    /// `signup`, `login`, `create`, `cancel`, `list`; or the fault's kind.
    pub op: String,
    /// `grpc` or `http` for operations; the target for faults.
    pub via: String,
    /// What was asked.
    #[serde(default)]
    pub args: serde_json::Value,
    /// What came back (ids), or the error.
    #[serde(default)]
    pub result: serde_json::Value,
}

#[derive(Debug)]
struct Inner {
    entries: Vec<Entry>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

/// Where entries are written as they happen (cheap to clone).
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    /// Records into memory and, if given, into `path` as JSON lines.
    pub fn new(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
            None => None,
        };
        Ok(Self {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(Inner {
                entries: Vec::new(),
                file,
            })),
        })
    }

    /// Seconds since the run began.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Appends one entry, timestamped now.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        process: &str,
        seq: u64,
        kind: Kind,
        op: &str,
        via: &str,
        args: serde_json::Value,
        result: serde_json::Value,
    ) {
        let entry = Entry {
            time: self.now(),
            process: process.to_owned(),
            seq,
            kind,
            op: op.to_owned(),
            via: via.to_owned(),
            args,
            result,
        };
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(file) = inner.file.as_mut()
            && let Ok(line) = serde_json::to_string(&entry)
        {
            let _ = writeln!(file, "{line}");
        }
        inner.entries.push(entry);
    }

    /// Everything recorded so far (and flushes the file).
    pub fn entries(&self) -> Vec<Entry> {
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(file) = inner.file.as_mut() {
            let _ = file.flush();
        }
        inner.entries.clone()
    }
}

/// Reads a history file back.
pub fn load(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| Ok(serde_json::from_str(line)?))
        .collect()
}
