"""Benchmarks: deterministic counts first, wall-time figures as medians with spread."""
