"""Client workloads against a running cluster."""
