"""The published contract of the events on Kafka: their payloads and headers as pydantic models
(payloads.py, headers.py), every event the gateway emits and its topic (messages.py), and the
AsyncAPI document generated from them (asyncapi.py)."""
