#!/usr/bin/env bash
# A host-wide disk stall under load, for real: every node's data directory on one loop-mounted
# ext4 file system, frozen with fsfreeze for STALL seconds (default 4.5) while `quorapay bench`
# runs 64 closed-loop clients for 40 s; then the node logs' role changes and slow writes.
# A busy disk is not a dead leader: expect writes that took STALL seconds and no leader change.
# Needs root (mount, fsfreeze) and a free loop device. Usage: [STALL=8] demo/disk-stall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
demo/install.sh >/dev/null
stall=${STALL:-4.5}
repo=$(pwd)
work=$(mktemp -d /tmp/quorapay-stall.XXXXXX)
mnt=$work/disk
quorapay() { (cd "$work" && "$repo/.venv/bin/quorapay" "$@"); }
cleanup() {
  fsfreeze -u "$mnt" 2>/dev/null || true
  quorapay down >/dev/null 2>&1 || true
  umount "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

truncate -s 400M "$work/disk.img"
mkfs.ext4 -q "$work/disk.img"
mkdir -p "$mnt"
mount -o loop "$work/disk.img" "$mnt"
quorapay init --no-proxies --base-port 8700 --zookeeper-port 29810 >/dev/null
sed -i "s#^data_dir = \".quorapay/quorapay-local/data/\(n[0-9]*\)\"#data_dir = \"$mnt/\1\"#" \
  "$work/cluster.toml"
quorapay up >/dev/null
quorapay bench --points 64 --seconds 40 --warm-up 2 > "$work/bench.txt" 2>&1 &
bench=$!
sleep 14
echo "== freezing the nodes' disk for $stall s"
fsfreeze -f "$mnt"
sleep "$stall"
fsfreeze -u "$mnt"
wait "$bench" || { cat "$work/bench.txt"; exit 1; }
tail -3 "$work/bench.txt"
echo "== role changes and slow writes (node logs)"
grep -h "quorapay.node.roles\|a write took" "$work"/.quorapay/quorapay-local/run/logs/n*.log | sort
changes=$(cat "$work"/.quorapay/quorapay-local/run/logs/n*.log \
  | grep -c "leadership of epoch .* ended" || true)
echo "== leader changes: $changes"
