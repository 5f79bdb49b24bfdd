"""A deterministic simulation of the relay: the real relay code over in-memory storage and
fault-injecting sinks, in virtual time, driven by one seed (``python -m simulation``)."""
