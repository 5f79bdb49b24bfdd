"""The deterministic simulation of sharded mode's place-order saga: a fixed set of seeds keeps
every invariant, and a seed replays exactly."""

from __future__ import annotations

from simulation.saga_world import simulate_saga

SEEDS = range(700)
STEPS = 200


def test_the_same_seed_gives_the_same_trace() -> None:
    first, second = simulate_saga(7, STEPS), simulate_saga(7, STEPS)
    assert len(first.trace) > STEPS
    assert first.digest == second.digest
    assert simulate_saga(8, STEPS).digest != first.digest


def test_a_run_goes_through_every_fault() -> None:
    trace = "\n".join(line for seed in range(20) for line in simulate_saga(seed, STEPS).trace)
    for seen in (
        "replayed=True",
        "ended by a crash",
        "ConnectionResetError",
        "stops answering",
        "the clock jumps",
        "reconciled",
        "ReservationLapsed",
        "answer.replayed=True",
        "refund_required",
        "mismatch",
        "timed out",
        "PaymentIdReused",
    ):
        assert seen in trace


def test_every_seed_keeps_every_invariant() -> None:
    failures = []
    for seed in SEEDS:
        outcome = simulate_saga(seed, STEPS)
        if not outcome.ok:
            failures.append(
                f"seed {seed}, step {outcome.step}: {outcome.violations[0]} (replay: python -m "
                f"simulation --saga --seed {seed} --steps {STEPS} --verbose)"
            )
    assert not failures, "\n".join(failures)
