#!/usr/bin/env bash
# One relay holding a crowd (issue #19): N real agents (2,500 to a worker
# process, all started at once) and M idle clients on 127.0.0.1; prints the
# relay's RSS per agent and per client, its CPU while they idle, the agents'
# registration times and a client's round trip before and among them:
# figures, not a pass/fail test (docs/PERFORMANCE.md "Scale of one relay").
#
#   tests/scripts/scale.sh [--agents 10000] [--clients 10000] [--idle-seconds 30]
#                          [--agent-transport auto|quic|tcp] [--agent-keep-alive 3s]
#                          [--max-handshakes N] (the relay's)
#                          [--storm crash|drain]   (then restart the relay under them)
#
# Release build of the real programs; every process is a child of
# relay-hostile, bounded in time, and killed when it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
exec target/release/relay-hostile scale --bins target/release "$@"
