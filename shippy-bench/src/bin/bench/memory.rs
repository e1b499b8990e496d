//! Resident memory of the watched processes, read from `/proc`: once at idle
//! (before any load) and sampled through each timed run.
//!
//! A single process's figure is its `VmRSS` (`/proc/PID/status`, what `ps`
//! and `top` show). A tree's (PostgreSQL: the postmaster and its backends) is
//! the sum of their `Pss` (`/proc/PID/smaps_rollup`): every backend maps the
//! shared buffers, and summing their `VmRSS` would count those pages once per
//! backend. `VmHWM` is no use here: it is a high-water mark since the process
//! started, so it cannot tell one scenario from the one before.

use std::{
    collections::HashMap,
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use crate::cpu::{self, Watched};

/// How often a timed run's memory is sampled.
pub const EVERY: Duration = Duration::from_millis(250);

/// The number after `key:` (in kB, as the kernel writes them) in a
/// `/proc/PID/status` or `smaps_rollup` text.
fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// `pid`'s `VmRSS` in KiB (`None` once it is gone, or for a kernel thread).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    field_kib(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS",
    )
}

/// `pid`'s proportional set size in KiB: its private pages, and its share
/// of each page it shares. Its `VmRSS` where `smaps_rollup` cannot be read.
fn pss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| field_kib(&text, "Pss"))
        .or_else(|| vm_rss_kib(pid))
}

/// `process`'s resident memory now, in KiB: see the module's doc.
pub fn resident_kib(process: &Watched) -> Option<u64> {
    if process.tree {
        let total: u64 = cpu::tree_pids(process.pid)
            .into_iter()
            .filter_map(pss_kib)
            .sum();
        (total > 0).then_some(total)
    } else {
        vm_rss_kib(process.pid)
    }
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Each watched process's resident memory now, in MiB, by name (a process
/// that is gone is left out).
pub fn now_mib(watched: &[Watched]) -> HashMap<String, f64> {
    watched
        .iter()
        .filter_map(|process| Some((process.name.clone(), mib(resident_kib(process)?))))
        .collect()
}

/// One process's resident memory over a timed run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resident {
    pub peak_mib: f64,
    pub mean_mib: f64,
    pub samples: usize,
}

impl Resident {
    fn of(samples_kib: &[u64]) -> Option<Self> {
        let peak = *samples_kib.iter().max()?;
        Some(Self {
            peak_mib: mib(peak),
            mean_mib: mib(samples_kib.iter().sum::<u64>()) / samples_kib.len() as f64,
            samples: samples_kib.len(),
        })
    }
}

/// Samples the watched processes' resident memory on a thread of its own,
/// every [`EVERY`], from [`Sampler::start`] to [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<HashMap<String, Vec<u64>>>,
}

impl Sampler {
    /// Takes a first sample at once, then one every `every`.
    pub fn start(watched: Vec<Watched>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = stop.clone();
            move || {
                let mut samples: HashMap<String, Vec<u64>> = HashMap::new();
                loop {
                    for process in &watched {
                        if let Some(kib) = resident_kib(process) {
                            samples.entry(process.name.clone()).or_default().push(kib);
                        }
                    }
                    if stop.load(Ordering::Acquire) {
                        return samples;
                    }
                    thread::park_timeout(every);
                }
            }
        });
        Self { stop, thread }
    }

    /// Takes a last sample and returns each process's peak and mean.
    pub fn finish(self) -> HashMap<String, Resident> {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let samples = self.thread.join().unwrap_or_default();
        samples
            .into_iter()
            .filter_map(|(name, samples)| Some((name, Resident::of(&samples)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that allocate take turns: each compares this process's
    /// memory before and after its own block.
    static ALLOCATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn me(tree: bool) -> Watched {
        let plus = if tree { "+" } else { "" };
        Watched::parse(&format!("me{plus}={}", std::process::id())).unwrap()
    }

    /// 64 MiB, every page written, so all of it is resident.
    fn touched() -> Vec<u8> {
        let mut block = vec![0u8; 64 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(block)
    }

    #[test]
    fn the_kernels_fields_are_read_in_kib() {
        let status = "Name:\tpostgres\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(field_kib(status, "VmRSS"), Some(10240));
        assert_eq!(field_kib(status, "VmHWM"), Some(20480));
        // `Pss_Anon:` is not `Pss:`.
        let rollup = "Rss:     900 kB\nPss_Anon:  5 kB\nPss:     300 kB\n";
        assert_eq!(field_kib(rollup, "Pss"), Some(300));
        assert_eq!(field_kib("VmRSS: lots\n", "VmRSS"), None);
        assert_eq!(field_kib("", "VmRSS"), None);
        assert_eq!(Resident::of(&[]), None);
        let resident = Resident::of(&[1024, 3072]).unwrap();
        assert_eq!((resident.peak_mib, resident.mean_mib), (3.0, 2.0));
    }

    #[test]
    fn memory_this_process_touches_shows_in_its_figures() {
        let _turn = ALLOCATING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (process, tree) = (me(false), me(true));
        let before = resident_kib(&process).unwrap();
        let block = touched();
        let during = resident_kib(&process).unwrap();
        // Other tests of this binary may allocate too: at least ours shows.
        assert!(during >= before + (48 << 10), "{before} KiB → {during} KiB");
        let tree_kib = resident_kib(&tree).unwrap();
        assert!(tree_kib >= 48 << 10, "the tree's PSS: {tree_kib} KiB");
        assert!(resident_kib(&Watched::parse("gone=4294967295").unwrap()).is_none());
        drop(block);
    }

    #[test]
    fn the_sampler_sees_a_peak_that_came_and_went() {
        let _turn = ALLOCATING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sampler = Sampler::start(vec![me(false)], Duration::from_millis(10));
        thread::sleep(Duration::from_millis(50));
        let block = touched();
        thread::sleep(Duration::from_millis(100));
        drop(block);
        thread::sleep(Duration::from_millis(50));
        let resident = sampler.finish()["me"];
        let after = mib(resident_kib(&me(false)).unwrap());
        assert!(resident.samples >= 3, "{resident:?}");
        assert!(
            resident.peak_mib >= after + 48.0 && resident.mean_mib < resident.peak_mib,
            "{resident:?}, {after} MiB after"
        );
    }
}
