"""Latency recording with HDR histograms: overall and for the current second."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from gateway.loadtest.model import EncodedLatencies, LatencySummary

# Microseconds, from 1 µs to 1 hour, three significant digits.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Latencies:
    """An HDR histogram of microseconds plus the exact sum of what it holds.

    The sum gives the mean without walking the histogram, which in the pure-Python ``hdrh``
    costs as much as the whole load generator's work for a second.
    """

    def __init__(self) -> None:
        self.histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self.total_micros = 0

    def record(self, micros: int) -> None:
        """Record one duration in microseconds."""
        self.histogram.record_value(micros)
        self.total_micros += micros

    def add(self, encoded: EncodedLatencies) -> None:
        """Add another histogram's counts, as :meth:`encode` gave them (exact: HDR histograms
        of the same range and precision merge without loss)."""
        self.histogram.decode_and_add(encoded["histogram"])
        self.total_micros += encoded["total_micros"]

    def encode(self) -> EncodedLatencies:
        """The histogram in HDR's compressed base64 form, for another process or a report."""
        return {"histogram": self.histogram.encode().decode(), "total_micros": self.total_micros}

    @property
    def count(self) -> int:
        """Durations recorded."""
        return int(self.histogram.get_total_count())

    def summary(self) -> LatencySummary:
        """Count, percentiles, max and mean in milliseconds (``None`` when empty)."""
        count = self.histogram.get_total_count()
        # One pass over the counts for all percentiles, not one pass each.
        values = self.histogram.get_percentile_to_value_dict(list(PERCENTILES))

        def ms(percentile: float) -> float | None:
            return values[percentile] / 1000 if count else None

        return {
            "count": count,
            "p50": ms(50.0),
            "p90": ms(90.0),
            "p99": ms(99.0),
            "p99.9": ms(99.9),
            "max": self.histogram.get_max_value() / 1000 if count else None,
            "mean": round(self.total_micros / count / 1000, 3) if count else None,
        }


class Recorder:
    """Durations recorded into an overall histogram and one for the current interval."""

    def __init__(self) -> None:
        self.overall = Latencies()
        self.interval = Latencies()

    def record(self, seconds: float) -> None:
        """Record one duration."""
        micros = min(max(int(seconds * 1_000_000), LOWEST_US), HIGHEST_US)
        self.overall.record(micros)
        self.interval.record(micros)

    def add(self, encoded: EncodedLatencies) -> None:
        """Add durations recorded elsewhere (another process's interval) to both."""
        self.overall.add(encoded)
        self.interval.add(encoded)

    def take_interval(self) -> LatencySummary:
        """The current interval's summary; a new interval starts."""
        return self.take_interval_latencies().summary()

    def take_interval_latencies(self) -> Latencies:
        """The current interval's histogram; a new interval starts."""
        result = self.interval
        self.interval = Latencies()
        return result
