"""Quorapay: a replicated payment ledger with a ZooKeeper-elected leader and quorum commit."""

__version__ = "0.1.0"
