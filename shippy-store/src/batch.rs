//! Calls made at the same time, run as one: group commit for the statements
//! every creation repeats.
//!
//! A [`Coalescer`] has one worker. A call waits in line; the worker takes
//! whatever is waiting (up to the batch limit) and runs it as one batch, so
//! while one batch is in the database the next one gathers. Nothing waits
//! for a batch to fill: a lone call runs at once, as it would unbatched, and
//! the busier the service the bigger the batches — one commit (one WAL
//! flush, one round trip, one lock on a hot row) shared by all of them.
//!
//! A batch runs in the span of the call that came first, so its database
//! or RPC spans join that call's trace (the others' traces show their wait).
//!
//! A caller that gives up (its deadline passed, its client went away) does
//! not take its call out of the batch: the batch runs it and the answer is
//! dropped, as a call cut off after it reached the database would be. The
//! steps batched here are idempotent, keyed by the consignment's id.
//!
//! No crate is used: the ones made for this wait a fixed window for a batch
//! to fill (latency added to every call at low load) or answer a whole
//! batch with one error, and the worker is twenty lines of tokio.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, Span};

/// How many calls may wait for the worker before callers wait to join the
/// line (each service admits a few hundred requests at a time anyway).
const QUEUE: usize = 4096;

type Run<In, Out> = dyn Fn(Vec<In>) -> BoxFuture<'static, Vec<Out>> + Send + Sync;

/// A call waiting in line: what it asks, its span, where its answer goes.
type Waiting<In, Out> = (In, Span, oneshot::Sender<Out>);

/// Runs concurrent calls of one kind together, in batches of up to
/// `max_batch`; see the module documentation.
pub struct Coalescer<In, Out> {
    run: Arc<Run<In, Out>>,
    max_batch: usize,
    /// Started on the first call, inside the runtime that makes it.
    line: OnceLock<mpsc::Sender<Waiting<In, Out>>>,
}

impl<In, Out> std::fmt::Debug for Coalescer<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// The worker went away before answering (its batch panicked, or the
/// runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the batch this call was in ended without an answer")]
pub struct Unanswered;

impl<In: Send + 'static, Out: Send + 'static> Coalescer<In, Out> {
    /// Batches run by `run`, which answers each call of a batch, in order.
    /// A batch it answers short leaves the calls without an answer
    /// ([`Unanswered`]).
    pub fn new<F, Fut>(max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<In>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Out>> + Send + 'static,
    {
        Self {
            run: Arc::new(move |batch| Box::pin(run(batch))),
            max_batch: max_batch.max(1),
            line: OnceLock::new(),
        }
    }

    /// Runs `input` in the next batch; answers its part of the result.
    pub async fn call(&self, input: In) -> Result<Out, Unanswered> {
        let line = self.line.get_or_init(|| self.start());
        let (answer, answered) = oneshot::channel();
        line.send((input, Span::current(), answer))
            .await
            .map_err(|_| Unanswered)?;
        answered.await.map_err(|_| Unanswered)
    }

    fn start(&self) -> mpsc::Sender<Waiting<In, Out>> {
        let (line, mut waiting) = mpsc::channel::<Waiting<In, Out>>(QUEUE);
        let (run, max_batch) = (self.run.clone(), self.max_batch);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            // Ends when the coalescer (the only sender) is dropped.
            while waiting.recv_many(&mut batch, max_batch).await > 0 {
                let mut first = None;
                let mut inputs = Vec::with_capacity(batch.len());
                let mut answers = Vec::with_capacity(batch.len());
                // A caller that gave up while waiting in line (its deadline
                // passed, its client went away) is not run for nothing.
                for (input, span, answer) in batch.drain(..) {
                    if answer.is_closed() {
                        continue;
                    }
                    first.get_or_insert(span);
                    inputs.push(input);
                    answers.push(answer);
                }
                if inputs.is_empty() {
                    continue;
                }
                // Its own task, so a batch that panics leaves its calls
                // unanswered and the worker serving the next ones.
                let outputs =
                    tokio::spawn(run(inputs).instrument(first.unwrap_or_else(Span::none)))
                        .await
                        .unwrap_or_default();
                for (answer, output) in answers.into_iter().zip(outputs) {
                    // The caller may have given up; its answer is dropped.
                    let _ = answer.send(output);
                }
            }
        });
        line
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;

    /// The sizes of the batches a coalescer ran.
    type Sizes = Arc<Mutex<Vec<usize>>>;

    /// A coalescer that doubles its inputs and records each batch's size;
    /// each batch takes `pause`.
    fn doubler(pause: Duration) -> (Arc<Coalescer<u32, u32>>, Sizes) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let coalescer = Coalescer::new(8, move |batch: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().map(|mut sizes| sizes.push(batch.len())).ok();
                tokio::time::sleep(pause).await;
                batch.into_iter().map(|n| n * 2).collect()
            }
        });
        (Arc::new(coalescer), sizes)
    }

    #[tokio::test]
    async fn a_lone_call_runs_at_once_in_a_batch_of_its_own() {
        let (coalescer, sizes) = doubler(Duration::ZERO);
        assert_eq!(coalescer.call(21).await.ok(), Some(42));
        assert_eq!(coalescer.call(5).await.ok(), Some(10));
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test]
    async fn calls_made_while_a_batch_runs_go_together_each_with_its_own_answer() {
        let (coalescer, sizes) = doubler(Duration::from_millis(50));
        let calls: Vec<_> = (0..20u32)
            .map(|n| {
                let coalescer = coalescer.clone();
                tokio::spawn(async move { (n, coalescer.call(n).await) })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.unwrap();
            assert_eq!(answer.ok(), Some(n * 2), "call {n} got another's answer");
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            20,
            "every call ran once: {sizes:?}"
        );
        assert!(
            sizes.iter().all(|&size| size <= 8),
            "over the limit: {sizes:?}"
        );
        assert!(
            sizes.len() <= 4,
            "20 calls at once should take a few batches: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_batch_that_panics_leaves_its_calls_unanswered_and_the_next_runs() {
        let coalescer = Coalescer::new(4, |batch: Vec<u32>| async move {
            assert!(!batch.contains(&0), "a batch with 0 in it panics");
            batch
        });
        assert!(coalescer.call(0).await.is_err());
        assert_eq!(coalescer.call(7).await.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_call_given_up_while_waiting_is_not_run() {
        let (coalescer, sizes) = doubler(Duration::from_millis(100));
        let first = tokio::spawn({
            let coalescer = coalescer.clone();
            async move { coalescer.call(1).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Waits behind the first batch, and gives up before it ends.
        let gave_up = tokio::time::timeout(Duration::from_millis(30), coalescer.call(2)).await;
        assert!(gave_up.is_err());
        assert_eq!(first.await.unwrap().ok(), Some(2));
        assert_eq!(coalescer.call(3).await.ok(), Some(6));
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![1, 1],
            "the call given up never ran"
        );
    }

    #[tokio::test]
    async fn a_batch_answered_short_leaves_its_calls_unanswered_and_the_next_runs() {
        let coalescer = Coalescer::new(4, |batch: Vec<u32>| async move {
            if batch.contains(&0) {
                Vec::new()
            } else {
                batch
            }
        });
        assert!(coalescer.call(0).await.is_err());
        assert_eq!(coalescer.call(7).await.ok(), Some(7));
    }
}
