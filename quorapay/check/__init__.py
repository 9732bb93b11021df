"""Jepsen-style tests against a running cluster: a workload, a nemesis, a history, a checker."""
