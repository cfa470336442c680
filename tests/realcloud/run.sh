#!/bin/bash
# Runs the real-OpenStack suites: starts (or reuses) the loopback cloud of
# ../shared/realcloud, then the gated tests with EXECUTOR_REALCLOUD=1.
# Usage: tests/realcloud/run.sh [extra cargo test args]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
shared=${REALCLOUD_SCRIPTS:-$here/../shared/realcloud}
export REALCLOUD_DIR=${REALCLOUD_DIR:-/tmp/realcloud}
bash "$shared/start.sh"
export OS_CLIENT_CONFIG_FILE="$REALCLOUD_DIR/clouds.yaml"
export EXECUTOR_REALCLOUD=1
cd "$here"
# Two threads: the cloud and this machine are small, and the tests share project demo's quota.
# The gated suites are the integration binary's modules whose names hold "realcloud".
timeout 1800 cargo test --test integration "$@" -- realcloud --test-threads=2
