"""Payments: the provider's signed notifications, what each does to its order, and the
timeout that cancels orders never paid."""
