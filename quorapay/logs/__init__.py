"""Node and proxy logs: one line per record, as text for people or JSON for machines; repeated
warnings rate-limited; `quorapay logs` merges them by time."""
