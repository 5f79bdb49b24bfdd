"""Latency recording with HDR histograms: overall and for the current second."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

# Microseconds, from 1 µs to 1 hour, three significant digits.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


def new_histogram() -> HdrHistogram:
    """An empty histogram of microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def summary(histogram: HdrHistogram) -> dict[str, float | int | None]:
    """Count, percentiles and max in milliseconds (``None`` when nothing was recorded)."""
    count = histogram.get_total_count()
    result: dict[str, float | int | None] = {"count": count}
    for name, percentile in PERCENTILES.items():
        result[name] = histogram.get_value_at_percentile(percentile) / 1000 if count else None
    result["max"] = histogram.get_max_value() / 1000 if count else None
    result["mean"] = round(histogram.get_mean_value() / 1000, 3) if count else None
    return result


class Recorder:
    """Durations recorded into an overall histogram and one for the current interval."""

    def __init__(self) -> None:
        self.overall = new_histogram()
        self.interval = new_histogram()

    def record(self, seconds: float) -> None:
        """Record one duration."""
        micros = min(max(int(seconds * 1_000_000), LOWEST_US), HIGHEST_US)
        self.overall.record_value(micros)
        self.interval.record_value(micros)

    def take_interval(self) -> dict[str, float | int | None]:
        """The current interval's summary; a new interval starts."""
        result = summary(self.interval)
        self.interval = new_histogram()
        return result
