#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that untrusted bytes reach (cargo-fuzz, libFuzzer,
# AddressSanitizer; needs a nightly toolchain and `cargo install cargo-fuzz`). Runs each target
# for SECONDS (default 400: 9 targets = one hour), JOBS at a time (default 1), keeps each target's corpus
# in $CORPUS/<target> between runs, and writes every target's libFuzzer output and a summary
# table generated from it into OUT (default fuzz/results/<date>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# A crash, a panic, an allocation over 64 MiB (-malloc_limit_mb) or an input taking over 10 s
# stops that target with its reproducer in fuzz/artifacts/<target>/; the script goes on with
# the next target and exits non-zero at the end.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-400}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(tc3 query params blob rsa_decrypt sm2_decrypt verify internal snapshot)
TARGET_DIR=${FUZZ_TARGET_DIR:-/var/cache/raftkms/fuzz-target}
CORPUS=${CORPUS:-/var/cache/raftkms/fuzz-corpus}
OUT=${OUT:-results/$(date -u +%Y-%m-%d)}
mkdir -p "$OUT"
for t in "${TARGETS[@]}"; do
  cargo +nightly fuzz build -O --target-dir "$TARGET_DIR" "$t" 2>"$OUT/build.err" ||
    { cat "$OUT/build.err" >&2; exit 1; }
done
rm -f "$OUT/build.err"
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null)"
  echo "seconds_per_target=$SECONDS_EACH"
  echo "rustc=$(rustc +nightly --version)"
  echo "cpus=$(nproc)"
  echo "load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/meta.env"
JOBS=${JOBS:-1}  # targets fuzzed at once (one core each)
echo "jobs=$JOBS" >>"$OUT/meta.env"
run_target() {
  local t=$1 before rc
  mkdir -p "$CORPUS/$t" "artifacts/$t"
  before=$(find "$CORPUS/$t" -type f | wc -l)
  echo "fuzz: $t for ${SECONDS_EACH}s (corpus: $before inputs)" >&2
  # seeds/<target> (committed, read-only for libFuzzer): valid inputs to start from.
  cargo +nightly fuzz run -O --target-dir "$TARGET_DIR" "$t" "$CORPUS/$t" \
    $([ -d "seeds/$t" ] && echo "seeds/$t") -- \
    -max_total_time="$SECONDS_EACH" -malloc_limit_mb=64 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$OUT/$t.log" 2>&1
  rc=$?
  echo "corpus_before=$before corpus_after=$(find "$CORPUS/$t" -type f | wc -l) exit=$rc" >>"$OUT/$t.log"
  [ $rc -eq 0 ] || echo "fuzz: $t stopped with $rc: see $OUT/$t.log and artifacts/$t/" >&2
  return $rc
}
status=0
running=0
for t in "${TARGETS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then wait -n || status=1; running=$((running - 1)); fi
  run_target "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
echo "load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.env"
python3 summary.py "$OUT" >"$OUT/summary.md"
gzip -9f "$OUT"/*.log  # libFuzzer's progress lines run to megabytes; summary.py reads .log.gz
cat "$OUT/summary.md"
exit $status
