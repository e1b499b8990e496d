-- The W3C trace context (traceparent, tracestate) of the request that wrote
-- the event, so the trace continues through NATS to the consumers.
ALTER TABLE outbox ADD COLUMN trace_context JSONB NOT NULL DEFAULT '{}';
