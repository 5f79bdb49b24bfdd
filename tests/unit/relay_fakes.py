"""The in-memory relay storage the unit tests drive the relay over (it lives in
:mod:`simulation.relay_storage`, where the simulation uses it too, and ``tests/contract``
holds it to PostgreSQL's rules)."""

from __future__ import annotations

from simulation.relay_storage import InMemoryRelayStorage, Lease, envelope

__all__ = ["InMemoryRelayStorage", "Lease", "envelope"]
