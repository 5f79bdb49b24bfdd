"""Every order's history: its stream of events, kept for good, and the fold that rebuilds an
order from it."""
