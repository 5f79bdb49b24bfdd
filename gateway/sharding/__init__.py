"""Spreading customers over several PostgreSQL primaries."""
