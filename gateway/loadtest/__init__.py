"""``fanout loadtest``: drive orders at a rate, measure writes and fan-out, check for drift."""

from gateway.loadtest.plan import LoadPlan, check_plan
from gateway.loadtest.runner import RunControl, run_loadtest

__all__ = ["LoadPlan", "RunControl", "check_plan", "run_loadtest"]
