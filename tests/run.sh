#!/usr/bin/env bash
# Install what is needed, then run every test: the linters (ruff, mypy --strict), the fast unit
# and fuzz tests, then 1000 seeds of the deterministic simulation, then the integration tests
# against a real ZooKeeper server and real node processes.
set -euo pipefail
cd "$(dirname "$0")/.."
demo/install.sh
.venv/bin/ruff check quorapay tests
.venv/bin/mypy quorapay
.venv/bin/python -m pytest tests -m "not integration" -q
.venv/bin/quorapay sim --seeds 1000
.venv/bin/python -m pytest tests -m integration -q
