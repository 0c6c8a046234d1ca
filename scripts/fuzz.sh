#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build: scripts/fuzz.sh BUILD_DIR
#
# Each executable BUILD_DIR/fuzz/X_fuzz runs for $FUZZ_SECONDS seconds (default 20), starting
# from a temporary copy of fuzz/corpus/X/ when that exists (new inputs never land in the repo),
# with the libFuzzer dictionary fuzz/X.dict when that exists.
# Inputs are at most $FUZZ_MAX_LEN bytes (default 8192). Crash, leak and timeout reproducers are
# kept in BUILD_DIR/fuzz-artifacts/X/. Exits 1 if any target fails, or if there is none to run.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" 2>/dev/null && pwd) || { echo "fuzz: no build directory $1" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-20}
max_len=${FUZZ_MAX_LEN:-8192}

work=$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

targets=()
if [ -d "$build_dir/fuzz" ]; then
  while IFS= read -r t; do targets+=("$t"); done < <(find "$build_dir/fuzz" -maxdepth 1 -type f -name '*_fuzz' -perm -u+x | sort)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no *_fuzz targets in $build_dir/fuzz (configure with -DFULCRUM_FUZZ=ON and build)" >&2
  exit 1
fi

failed=()
for target in "${targets[@]}"; do
  name=$(basename "$target")
  short=${name%_fuzz}
  corpus="$work/$short"
  mkdir -p "$corpus"
  if [ -d "$repo/fuzz/corpus/$short" ]; then
    cp -R "$repo/fuzz/corpus/$short/." "$corpus/"
  fi
  artifacts="$build_dir/fuzz-artifacts/$short"
  mkdir -p "$artifacts"
  dict=()
  if [ -f "$repo/fuzz/$short.dict" ]; then dict=(-dict="$repo/fuzz/$short.dict"); fi
  log="$work/$name.log"
  echo "fuzz: $name for ${seconds}s (corpus: $(find "$corpus" -type f | wc -l) files)"
  # -timeout: one input taking this long is a hang; -rss_limit_mb: a parser never needs 2 GiB.
  "$target" "$corpus" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "fuzz: $name FAILED (exit $rc); last lines of its log:" >&2
    tail -n 40 "$log" >&2
    echo "fuzz: reproducers in $artifacts/ (run: $target FILE)" >&2
    failed+=("$name")
  else
    grep -E '^stat::number_of_executed_units|^Done ' "$log" | tr '\n' ' ' | sed 's/^/fuzz:   /'
    echo
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) passed"
