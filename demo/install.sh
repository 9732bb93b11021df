#!/usr/bin/env bash
# Install what Quorapay needs on Debian, as root, idempotently: Python 3.11+ with venv,
# Java + ZooKeeper (Debian's `zookeeper` package), then a virtualenv in .venv with the package.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
python_ok() { python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
python_ok || need+=(python3 python3-venv)
{ [ -n "${ZOOKEEPER_HOME:-}" ] || [ -f /usr/share/java/zookeeper.jar ]; } && command -v java >/dev/null \
  || need+=(zookeeper)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: missing ${need[*]}; run as root (or install them) and try again" >&2
    exit 1
  fi
  echo "== apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python_ok || { echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing quorapay into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
