#!/usr/bin/env bash
# Soak: forwards, `connect`s and `run` sessions kept busy for MINUTES
# (default 10) through 2 % loss and periodic partitions, sampling RSS, open
# fds and live streams of relay and agent every 5 s into a CSV. Fails on any
# byte mismatch, on memory growth, or on fds/streams left after the load.
# Not part of CI; docs/RELIABILITY.md has a run.
#
#   tests/scripts/soak.sh [MINUTES] [CSV]      (CSV default: target/soak.csv)
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes="${1:-10}"
csv="${2:-target/soak.csv}"
cargo build --release --quiet
exec target/release/relay-hostile soak --bins target/release --minutes "$minutes" --csv "$csv"
