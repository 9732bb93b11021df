"""Convergence checks: loading is the only I/O; the checks are pure functions over data."""
