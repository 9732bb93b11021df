"""The trio driver of one node process: owns time, tasks and every I/O around the core."""
