"""The sans-IO replication core.

Everything in this package is plain, synchronous, deterministic code: it takes typed inputs and
returns typed work. It never reads a clock, draws random numbers, touches a file or a socket, or
starts a thread (tests/core/test_purity.py enforces the imports).
"""
