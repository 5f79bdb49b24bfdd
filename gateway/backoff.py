"""Exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number ``attempt`` (1-based): uniform in [0, min(cap, base * 2^(n-1))].

    Full jitter spreads the retries of many events (or relays) hitting one store.
    """

    initial_seconds: float
    max_seconds: float

    def ceiling(self, attempt: int) -> float:
        """The largest delay retry ``attempt`` may wait."""
        exponent = min(max(attempt - 1, 0), 62)
        return float(min(self.max_seconds, self.initial_seconds * 2**exponent))

    def delay(self, attempt: int) -> float:
        """A random delay for retry ``attempt``."""
        return random.uniform(0.0, self.ceiling(attempt))
