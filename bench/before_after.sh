#!/usr/bin/env bash
# Before/after figures of the engine on one host, in the same minutes.
#
#     bench/before_after.sh [BEFORE [ROUNDS]]      (from the repository root, after scripts/setup.sh)
#
# BEFORE is the commit to compare with (default: the last commit before the
# engine speed work, see docs/performance.md); the current checkout is
# "after".  The BEFORE tree is exported to a temporary directory (git
# archive, with this checkout's compiled extensions and its bench/ scripts,
# so both sides are measured by the same benchmark code) and the two are run
# interleaved, A B A B, ROUNDS times (default 2), so that a change in the
# machine's load hits both alike.  Every run prints its own host report
# (CPU, flags, torch build, calibration matmul, load average before and
# after) and the official runtime's figure measured in the same run.
#
# Runs, per side and round (about 4 minutes per round on a quiet 2-core host):
#   bench/engine.py  DeepFilterNet3 0.1 s chunks, batches 16 and 64, 2 torch threads, 1 worker
#   bench/engine.py  DeepFilterNet2 2 s chunks, batches 16 and 32, 2 torch threads, 1 worker
#   bench/engine.py  DeepFilterNet3 0.1 s chunks, batches 64 and 128, 1 torch thread, 2 workers (after only)
#   bench/enhance.py 20 s, batch 16, 2 threads
#   bench/profile_engine.py  CPU time and page faults of one pass, DFN3 0.1 s, batch 64, 1 thread
# Output goes to stdout and to bench-before-after-<date>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BEFORE=${1:-7ae2158}
ROUNDS=${2:-2}
PY=${PY:-$ROOT/.venv/bin/python}
LOG=$ROOT/bench-before-after-$(date -u +%Y%m%dT%H%M).log
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

git archive "$BEFORE" | tar -x -C "$TMP"
# The compiled ring buffer lives at the package's place in either layout.
find denoisecast -name '_ringbuffer*.so' | while read -r so; do
    for dir in "$TMP/$(dirname "$so")" "$TMP"/denoisecast/dsp "$TMP"/denoisecast/audio; do
        [ -d "$dir" ] && cp "$so" "$dir/"
    done
done
# The same benchmark code on both sides, importing each side's package.
rm -rf "$TMP/bench" && cp -r bench "$TMP/bench"

run() {  # side, then bench arguments
    local side=$1 tree
    shift
    tree=$([ "$side" = before ] && echo "$TMP" || echo "$ROOT")
    echo "=== $side ($([ "$side" = before ] && echo "$BEFORE" || git rev-parse --short HEAD)): $* ; load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd "$tree" && "$PY" "$@")
}

{
    echo "# before/after on $(hostname), $(date -u '+%Y-%m-%d %H:%M UTC'), before=$BEFORE after=$(git rev-parse --short HEAD)"
    for round in $(seq "$ROUNDS"); do
        echo "## round $round"
        for side in before after; do
            run "$side" bench/engine.py --devices cpu --models dfn3 --chunks 0.1 --batches 16,64 --threads 2 --repeats 1
            run "$side" bench/engine.py --devices cpu --models dfn2 --chunks 2 --batches 16,32 --threads 2 --repeats 1
            run "$side" bench/enhance.py --seconds 20 --batch 16 --threads 2
            run "$side" bench/profile_engine.py --model dfn3 --chunk 0.1 --batch 64 --threads 1 --passes 10
        done
        run after bench/engine.py --devices cpu --models dfn3 --chunks 0.1 --batches 64,128 --threads 1 --workers 2 --repeats 1
    done
} 2>&1 | tee "$LOG"
