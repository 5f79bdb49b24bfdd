"""``python -m simulation [--saga] --seed N [--steps S] [--seeds K] [--verbose]``: run seeds N
to N+K-1 of the relay's simulation (of sharded mode's place-order saga with ``--saga``); on a
failure, print the seed, the step and how to replay it."""

from __future__ import annotations

import argparse
import sys

from simulation.saga_world import simulate_saga
from simulation.world import Faults, simulate


def main(argv: list[str] | None = None) -> int:
    """Run the seeds asked for; 1 if any broke an invariant."""
    parser = argparse.ArgumentParser(prog="python -m simulation", description=__doc__)
    parser.add_argument("--saga", action="store_true", help="simulate the place-order saga")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed on")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="print the trace step by step")
    parser.add_argument("--no-hangs", action="store_true", help="no sink call that never answers")
    parser.add_argument("--no-rewinds", action="store_true", help="no operator rewinds")
    args = parser.parse_args(argv)
    faults = Faults(hangs=not args.no_hangs, rewinds=not args.no_rewinds)
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        if args.saga:
            outcome = simulate_saga(seed, args.steps, verbose=args.verbose)
            ok, step, violations = outcome.ok, outcome.step, outcome.violations
        else:
            relay = simulate(seed, args.steps, faults, verbose=args.verbose)
            ok, step, violations = relay.ok, relay.step, relay.violations
        if ok:
            continue
        failed += 1
        print(f"seed {seed} broke an invariant at step {step}:")
        for violation in violations[:10]:
            print(f"  {violation}")
        flags = " --saga" * args.saga
        flags += " --no-hangs" * args.no_hangs + " --no-rewinds" * args.no_rewinds
        print(f"  replay: python -m simulation --seed {seed} --steps {args.steps}{flags} --verbose")
    print(f"{args.seeds - failed} of {args.seeds} seeds kept every invariant")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
