#!/usr/bin/env bash
# The Quorapay demo: install, start a 3-node cluster, pay, kill the leader, pay on the new
# leader, bring the old leader back, and verify that every ledger converged.
# Usage: demo/run.sh [--keep]   (--keep leaves the cluster running afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
demo/install.sh
export PATH="$PWD/.venv/bin:$PATH"
export QUORAPAY_CONFIG="$PWD/cluster.toml"
record=.quorapay/demo-acknowledged.jsonl
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "the cluster's secrets: a CA, a certificate per node, operator and payer credentials"
quorapay down >/dev/null
rm -rf .quorapay  # a clean slate: node data, ZooKeeper's data, logs, secrets
quorapay init --secrets-only

step "starting ZooKeeper and three nodes (mutual TLS between them, TLS for clients)"
quorapay up
quorapay status

step "opening accounts and moving money"
quorapay account create bank --allow-negative   # an issuer: only an operator may open one
quorapay account create alice bob
quorapay pay bank alice 10000 --id demo-deposit
quorapay --credential payer pay alice bob 2500 --id demo-lunch   # as the payer credential
quorapay --credential payer pay alice bob 2500 --id demo-lunch   # the same id again: applied once
quorapay balance alice bob bank

step "200 transfers from 4 concurrent clients"
quorapay workload --transfers 200 --clients 4 --record "$record"

step "kill -9 the leader"
quorapay chaos kill-leader
quorapay status

step "200 more transfers, on the new leader"
quorapay workload --transfers 200 --clients 4 --record "$record"

step "restarting the killed node: it catches up"
quorapay up
step "verifying every ledger"
quorapay verify --acknowledged "$record"
quorapay status

if [ "${1:-}" = "--keep" ]; then
  step "the cluster keeps running: try quorapay status / pay / chaos kill-leader; stop with quorapay down"
else
  step "stopping the cluster (demo/run.sh --keep leaves it running)"
  quorapay down
fi
