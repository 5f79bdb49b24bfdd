"""Traces (OpenTelemetry): the tracer provider a process starts from its settings, the sampling
rule, the trace context an outbox row carries, and the spans of the relay's deliveries."""
