#!/usr/bin/env bash
# Round-trip latency of a well-behaved client under floods, and the relay's
# memory; then what another identity sees while one stalls many streams
# (relay path and direct paths): figures, not a pass/fail test
# (docs/RELIABILITY.md has a run).
#
#   tests/scripts/flood.sh [--samples 3000] [--idle 500] [--seconds 8] [--junk-pps 50000] [--initials-pps 5000]
#                          [--streams 64] [--mib 64]
#
# Release build of the real programs; relay, agent and flooders are separate
# processes on 127.0.0.1, all children of relay-hostile, all bounded in time
# (each flood lasts --seconds) and killed when it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
target/release/relay-hostile flood --bins target/release "$@"
exec target/release/relay-hostile stall --bins target/release "$@"
