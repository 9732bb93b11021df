#!/usr/bin/env bash
# Run every row of the failure matrix against real processes and regenerate its table in
# docs/04-evaluation/failure-matrix.md from the results of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
demo/install.sh
results=docs/04-evaluation/failure-matrix.jsonl  # this run's raw results, kept beside the table
rm -f "$results"
QUORAPAY_MATRIX_OUT="$results" .venv/bin/python -m pytest tests/integration/test_failure_matrix.py -q
.venv/bin/python -m quorapay.check.matrix "$results" > docs/04-evaluation/failure-matrix.md
echo "wrote docs/04-evaluation/failure-matrix.md (and its raw results, $results)"
