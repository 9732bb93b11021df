"""Faults injected into a running local cluster."""
