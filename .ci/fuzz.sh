#!/usr/bin/env bash
# Builds the cargo-fuzz workspace (fuzz/) and runs every target for a bounded
# time from its seed corpus in fuzz/corpus/<target>/. Any crash, panic,
# timeout or out-of-memory fails the run, after all targets have had their
# turn, so one CI run reports every broken target.
#
# Needs the nightly toolchain (libFuzzer's sanitizer flags are nightly-only);
# installs the pinned cargo-fuzz from crates.io when it is missing.
#
#   FUZZ_SECONDS=60 bash .ci/fuzz.sh            # longer runs
#   FUZZ_SECONDS=60 bash .ci/fuzz.sh rpc login7 # some targets only
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: its output format (the stats parsed below) and flags are what this
# script was written against; --locked keeps its dependencies as released.
CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: the nightly toolchain is required (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# At most two build jobs: CI and the developers' machines have two cores.
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo +nightly fuzz build

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
summary=()
for target in "${targets[@]}"; do
    seeds="fuzz/corpus/$target"
    if [ ! -d "$seeds" ]; then
        echo "fuzz: $target has no seed corpus in $seeds" >&2
        failed=$((failed + 1))
        summary+=("$target: no seed corpus")
        continue
    fi
    # libFuzzer writes new inputs into the first corpus directory: a scratch
    # one, so the repository's seeds are only read.
    mkdir -p "$work/$target"
    log="$work/$target.log"
    echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
    status=0
    cargo +nightly fuzz run "$target" "$work/$target" "$seeds" -- \
        -max_total_time="$SECONDS_PER_TARGET" \
        -timeout=10 \
        -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        summary+=("$target: ok, ${execs:-?} executions")
    else
        failed=$((failed + 1))
        summary+=("$target: FAILED (exit $status), ${execs:-?} executions")
        # The panic or sanitizer report, the end of the log, the reproducer's
        # path and its bytes (CI keeps only the log).
        grep -m 1 -A 8 -E 'panicked at|==ERROR|ERROR: libFuzzer' "$log" || true
        tail -n 30 "$log"
        for artifact in fuzz/artifacts/"$target"/*; do
            [ -f "$artifact" ] || continue
            echo "fuzz: reproducer $artifact ($(wc -c <"$artifact") bytes):"
            od -An -tx1 -v "$artifact" | head -n 64
            echo "fuzz: replay with: cargo +nightly fuzz run $target $artifact"
        done
    fi
done

echo "fuzz: summary"
for line in "${summary[@]}"; do
    echo "  $line"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
