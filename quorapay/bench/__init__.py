"""Benchmarks run by hand (`quorapay bench ...`), reported in docs/04-evaluation."""
