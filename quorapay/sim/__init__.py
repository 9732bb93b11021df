"""Deterministic simulation: the real core, coordinator and ledger in a simulated world."""
