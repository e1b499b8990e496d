//! A service process's log, captured to a file of the test's own and read
//! back once the process has stopped.

use std::path::{Path, PathBuf};

/// A log file in the temporary directory, removed when dropped.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
}

impl LogFile {
    /// A new, unique file named after `name`.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4()));
        Self { path }
    }

    /// Where the process should write.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path)
            .unwrap_or_else(|error| panic!("read {}: {error}", self.path.display()))
    }

    /// The lines that contain `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Each line as JSON (`LOG_FORMAT=json`); a line that is not is a failure.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect()
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
