//! The span of one store operation, made by [`dispatch!`](crate::dispatch)
//! for either database: [`traced`] runs the call in it and records its
//! error there, as `#[tracing::instrument(err(Display, level = "debug"))]`
//! would.

use std::fmt::Display;

use tracing::{Instrument as _, Span};

/// What a store operation answers, as far as its span records it.
pub trait Answer {
    /// The error to record in the operation's span, if any.
    fn error(&self) -> Option<&dyn Display>;
}

/// A single answer: its error, if it is one.
impl<T, E: Display> Answer for Result<T, E> {
    fn error(&self) -> Option<&dyn Display> {
        self.as_ref().err().map(|error| error as &dyn Display)
    }
}

/// A batch's answers, one per item: each item's error is its own, none is
/// the operation's.
impl<T> Answer for Vec<T> {
    fn error(&self) -> Option<&dyn Display> {
        None
    }
}

/// Runs `call` in `span`; an error it answers is recorded there as a DEBUG
/// event with the field `error` (its `Display`).
pub async fn traced<F>(span: Span, call: F) -> F::Output
where
    F: Future,
    F::Output: Answer,
{
    async move {
        let answer = call.await;
        if let Some(error) = answer.error() {
            tracing::debug!(error = %error);
        }
        answer
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use tracing::{
        Event, Level, Metadata, Subscriber,
        field::{Field, Visit},
        span::{Attributes, Id, Record},
    };

    use crate::Store;

    /// A stand-in for either database's store.
    struct Fake(Result<u32, &'static str>);

    impl Fake {
        async fn get(&self, _id: u32) -> Result<u32, &'static str> {
            self.0
        }

        async fn get_many(&self, ids: &[u32]) -> Vec<Result<u32, &'static str>> {
            ids.iter().map(|_| self.0).collect()
        }
    }

    async fn get(store: &Store<Fake, Fake>, id: u32) -> Result<u32, &'static str> {
        crate::dispatch!(store, "get_thing" { thing.id = id }, inner => inner.get(id))
    }

    async fn get_many(store: &Store<Fake, Fake>, ids: &[u32]) -> Vec<Result<u32, &'static str>> {
        crate::dispatch!(
            store,
            "get_things" { batch.size = ids.len() },
            inner => inner.get_many(ids)
        )
    }

    /// A field's name and value, as text.
    type Fields = Vec<(&'static str, String)>;

    #[derive(Debug, Clone, PartialEq)]
    struct CapturedSpan {
        name: &'static str,
        level: Level,
        fields: Fields,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct CapturedEvent {
        level: Level,
        /// The name of the span it happened in.
        within: Option<&'static str>,
        fields: Fields,
    }

    #[derive(Debug, Default)]
    struct Captured {
        spans: Vec<CapturedSpan>,
        entered: Vec<u64>,
        events: Vec<CapturedEvent>,
    }

    /// A subscriber keeping every span and event.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Captured>>);

    struct Collect<'a>(&'a mut Fields);

    impl Visit for Collect<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name(), format!("{value:?}")));
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut fields = Vec::new();
            span.record(&mut Collect(&mut fields));
            let mut captured = self.0.lock().unwrap();
            captured.spans.push(CapturedSpan {
                name: span.metadata().name(),
                level: *span.metadata().level(),
                fields,
            });
            Id::from_u64(captured.spans.len() as u64)
        }

        fn record(&self, span: &Id, values: &Record<'_>) {
            let mut captured = self.0.lock().unwrap();
            let index = span.into_u64() as usize - 1;
            values.record(&mut Collect(&mut captured.spans[index].fields));
        }

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut fields = Vec::new();
            event.record(&mut Collect(&mut fields));
            let mut captured = self.0.lock().unwrap();
            let within = captured
                .entered
                .last()
                .map(|id| captured.spans[*id as usize - 1].name);
            captured.events.push(CapturedEvent {
                level: *event.metadata().level(),
                within,
                fields,
            });
        }

        fn enter(&self, span: &Id) {
            self.0.lock().unwrap().entered.push(span.into_u64());
        }

        fn exit(&self, _: &Id) {
            self.0.lock().unwrap().entered.pop();
        }
    }

    /// What `run` leaves in the spans and events, seen by a subscriber of
    /// this thread (the test's runtime runs on it alone).
    async fn captured<T>(run: impl Future<Output = T>) -> (T, Captured) {
        let capture = Capture::default();
        let answer = {
            let _default = tracing::subscriber::set_default(capture.clone());
            run.await
        };
        let captured = std::mem::take(&mut *capture.0.lock().unwrap());
        (answer, captured)
    }

    #[tokio::test]
    async fn each_database_s_call_runs_in_its_span_named_after_the_database() {
        for (store, name) in [
            (Store::Postgres(Fake(Ok(7))), "postgres.get_thing"),
            (Store::Mongo(Fake(Ok(7))), "mongodb.get_thing"),
        ] {
            let (answer, captured) = captured(get(&store, 42)).await;
            assert_eq!(answer, Ok(7));
            assert_eq!(
                captured.spans,
                [CapturedSpan {
                    name,
                    level: Level::INFO,
                    fields: vec![("thing.id", "42".to_owned())],
                }]
            );
            assert_eq!(captured.events, [], "no error, no event");
        }
    }

    #[tokio::test]
    async fn an_error_is_a_debug_event_in_the_call_s_span() {
        for (store, name) in [
            (Store::Postgres(Fake(Err("down"))), "postgres.get_thing"),
            (Store::Mongo(Fake(Err("down"))), "mongodb.get_thing"),
        ] {
            let (answer, captured) = captured(get(&store, 42)).await;
            assert_eq!(answer, Err("down"));
            assert_eq!(
                captured.events,
                [CapturedEvent {
                    level: Level::DEBUG,
                    within: Some(name),
                    fields: vec![("error", "down".to_owned())],
                }]
            );
        }
    }

    #[tokio::test]
    async fn a_batch_s_answers_are_not_the_call_s_error() {
        let store = Store::<Fake, Fake>::Postgres(Fake(Err("down")));
        let (answers, captured) = captured(get_many(&store, &[1, 2])).await;
        assert_eq!(answers, [Err("down"), Err("down")]);
        assert_eq!(
            captured.spans,
            [CapturedSpan {
                name: "postgres.get_things",
                level: Level::INFO,
                fields: vec![("batch.size", "2".to_owned())],
            }]
        );
        assert_eq!(captured.events, []);
    }
}
