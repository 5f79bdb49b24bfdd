"""The Kafka client benchmark's figures: throughput, latency percentiles, medians and ratios."""

import pytest

from bench.kafka_clients import RoundResult, client_order, medians, percentile, ratios, round_result


def test_round_result_measures_from_first_send_to_last_acknowledgement() -> None:
    sent = [0.0, 0.1, 0.2, 0.3]
    acknowledged = [0.01, 0.15, 0.3, 0.5]

    result = round_result(sent, acknowledged, cpu_s=0.002)

    assert result.records_per_second == 8.0  # 4 records over 0.5 s
    assert result.latency_ms == {"p50": 100.0, "p99": 200.0, "max": 200.0}
    assert result.cpu_ms_per_record == 0.5


def test_round_result_refuses_mismatched_times() -> None:
    with pytest.raises(ValueError, match="one time per record"):
        round_result([0.0, 1.0], [1.0], cpu_s=0.0)


def test_percentile_takes_the_nearest_rank() -> None:
    values = list(range(1, 101))

    assert percentile(values, 0.5) == 51
    assert percentile(values, 0.99) == 100
    assert percentile([7.0], 0.99) == 7.0


def test_medians_and_ratios_compare_the_clients_figure_by_figure() -> None:
    def figures(rate: float, p50: float, cpu: float) -> RoundResult:
        return RoundResult(rate, {"p50": p50, "p99": 2 * p50, "max": 3 * p50}, cpu)

    slow = medians([figures(100, 4, 0.04), figures(120, 2, 0.06), figures(80, 6, 0.05)])
    fast = medians([figures(600, 2, 0.01)])

    assert slow == figures(100, 4, 0.05)
    assert ratios(fast, slow) == {
        "records_per_second": 6.0,
        "latency_p50": 0.5,
        "latency_p99": 0.5,
        "cpu_per_record": 0.2,
    }


def test_the_clients_take_turns_going_first() -> None:
    assert client_order(0) == ("aiokafka", "confluent-kafka")
    assert client_order(1) == ("confluent-kafka", "aiokafka")
