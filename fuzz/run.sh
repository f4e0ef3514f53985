#!/usr/bin/env bash
# A fuzzing campaign of one target: fuzz/run.sh TARGET [MINUTES=10]
# Seeds from fuzz/corpus/TARGET (checked in); what the campaign finds goes to
# fuzz/work/TARGET (not checked in); a crash lands in fuzz/artifacts/TARGET/ — add it to
# fuzz/corpus/TARGET as a regression case once fixed. Needs a nightly toolchain and
# cargo-fuzz (installed here when missing). Targets: `ls fuzz/fuzz_targets`.
set -euo pipefail
cd "$(dirname "$0")"
TARGET=${1:?usage: fuzz/run.sh TARGET [MINUTES]}
MINUTES=${2:-10}
[ -f "fuzz_targets/$TARGET.rs" ] || { echo "no target $TARGET; see fuzz/fuzz_targets" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "work/$TARGET"
exec cargo +nightly fuzz run -O "$TARGET" "work/$TARGET" "corpus/$TARGET" -- \
  -max_total_time=$((MINUTES * 60)) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
