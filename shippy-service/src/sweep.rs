//! Background work a service repeats on a clock — the consignment saga's
//! recovery, the expiry of held vessel reservations — run one way: a round
//! every interval, only while the store is ready, until shutdown.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::{Shutdown, readiness::Ready};

/// The shortest interval [`every`] keeps to, whatever it is given.
const SHORTEST: Duration = Duration::from_millis(10);

/// Runs `round` every `interval` (at least 10 ms) while `ready`, until
/// `shutdown`; the first round runs at once. A round that overruns delays
/// the next rather than bunching rounds up, and one that fails is for
/// `round` to log: the next tick simply tries again.
pub async fn every<R: Future<Output = ()>>(
    interval: Duration,
    ready: Ready,
    shutdown: Shutdown,
    mut round: impl FnMut() -> R,
) {
    let mut ticks = tokio::time::interval(interval.max(SHORTEST));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticks.tick() => {}
        }
        if ready.is_ready() {
            round().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rounds_run_only_while_ready_and_stop_on_shutdown() {
        let ready = Ready::new();
        let shutdown = Shutdown::new();
        let rounds = Arc::new(AtomicUsize::new(0));
        let sweeping = tokio::spawn({
            let (ready, shutdown, rounds) = (ready.clone(), shutdown.clone(), rounds.clone());
            every(Duration::from_secs(1), ready, shutdown, move || {
                rounds.fetch_add(1, Ordering::SeqCst);
                std::future::ready(())
            })
        });
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 0, "not ready: no round");
        ready.set();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            2,
            "a round a tick once ready"
        );
        shutdown.trigger();
        sweeping.await.unwrap();
    }
}
