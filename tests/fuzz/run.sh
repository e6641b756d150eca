#!/usr/bin/env bash
# Fuzz every decoder and parser for SECONDS each (default 10), starting
# from the committed corpus. Longer runs on demand: `tests/fuzz/run.sh 600`,
# or one target: `tests/fuzz/run.sh 600 frame`. CI runs every target for
# 10 s (`.ci/run`); the build needs none of the network stack (src/lib.rs),
# so it takes about a minute.
#
# New inputs go to a scratch directory, never into the committed corpus
# (minimise and add the interesting ones by hand). A crash leaves its input
# in tests/fuzz/artifacts/TARGET/ and makes this script fail; reproduce with
#   cargo +nightly fuzz run TARGET tests/fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-10}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(frame identity socks5 policy revocations credential allowlist peer_cert carrier)
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (about a minute)..."
    cargo install cargo-fuzz --locked
fi

# One build for all targets (the first takes a few minutes on 2 cores).
start=$SECONDS
cargo +nightly fuzz build
echo "fuzz build: $((SECONDS - start))s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "== $target: ${seconds}s"
    # -rss_limit_mb: a parser must not need more than this for any input.
    status=0
    cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$scratch/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$scratch/$target.log" >&2
        echo "FUZZ FAILURE in $target (exit $status): input in tests/fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzzing: all ${#targets[@]} targets ran ${seconds}s each without a crash"
