"""The local supervisor behind `quorapay up`, `down`, `status` and the process faults."""
