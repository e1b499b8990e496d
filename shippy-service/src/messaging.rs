//! Spans for NATS messages, after OpenTelemetry's messaging conventions:
//! [`messaging_span!`](crate::messaging_span) names the span
//! `"{subject} {operation}"` for the exporter, sets its kind, the messaging
//! system, operation and destination, and leaves `trace_id` and `span_id`
//! for the log lines that continue a trace.

#[doc(hidden)]
pub use tracing;

/// An `INFO` span for one NATS message: `$name` is its name in log lines,
/// `"{subject} {operation}"` its name in traces; `$kind` is
/// `"producer"` or `"consumer"`. Further fields (each with a trailing
/// comma) go before `trace_id` and `span_id`.
///
/// ```
/// let subject = "user.created";
/// let span = shippy_service::messaging_span!(
///     "user.created publish", "producer", "publish", subject,
///     messaging.message.id = "e1",
/// );
/// # drop(span);
/// ```
#[macro_export]
macro_rules! messaging_span {
    ($name:literal, $kind:literal, $operation:literal, $subject:expr, $($field:tt)*) => {
        // The subject evaluated once, though two fields show it.
        match &$subject {
            subject => $crate::messaging::tracing::info_span!(
                $name,
                otel.name = %::std::format!("{} {}", subject, $operation),
                otel.kind = $kind,
                messaging.system = "nats",
                messaging.operation.type = $operation,
                messaging.destination.name = %subject,
                $($field)*
                trace_id = $crate::messaging::tracing::field::Empty,
                span_id = $crate::messaging::tracing::field::Empty,
            ),
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_subject_is_evaluated_once() {
        let mut evaluated = 0;
        let mut subject = || {
            evaluated += 1;
            "user.created"
        };
        // Recorded (a subscriber wants the span), its fields are evaluated.
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span =
                crate::messaging_span!("user.created publish", "producer", "publish", subject(),);
            assert!(!span.is_disabled());
        });
        assert_eq!(evaluated, 1);
    }
}
