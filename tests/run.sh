#!/usr/bin/env bash
# Install what is needed, then run every test: the fast unit and simulation tests first, then
# the integration tests against a real ZooKeeper server and real node processes.
set -euo pipefail
cd "$(dirname "$0")/.."
demo/install.sh
.venv/bin/python -m pytest tests -m "not integration" -q
.venv/bin/python -m pytest tests -m integration -q
