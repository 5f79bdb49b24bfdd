"""The deterministic simulation of the relay: a fixed set of seeds keeps every invariant, and a
seed replays exactly."""

from __future__ import annotations

from simulation.world import Faults, simulate

SEEDS = [*range(300), 2922]
"""300 seeds in a row, and the seeds that once found a defect (2922: events held behind a
failed version of their aggregate used up attempts of their own)."""
STEPS = 100
CI_FAULTS = Faults()
"""Every fault: sink calls that never answer and rewinds included."""


def test_the_same_seed_gives_the_same_trace() -> None:
    first, second = simulate(7, STEPS), simulate(7, STEPS)
    assert len(first.trace) > STEPS
    assert first.digest == second.digest
    assert simulate(8, STEPS).digest != first.digest


def test_every_seed_keeps_every_invariant() -> None:
    failures = []
    for seed in SEEDS:
        outcome = simulate(seed, STEPS, CI_FAULTS)
        if not outcome.ok:
            failures.append(
                f"seed {seed}, step {outcome.step}: {outcome.violations[0]} (replay: python -m "
                f"simulation --seed {seed} --steps {STEPS} --verbose)"
            )
    assert not failures, "\n".join(failures)
