#!/usr/bin/env bash
# Bounded fuzzing of every target in fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer).
# Usage: ./scripts/fuzz.sh [seconds per target, default 60] [target…]
#
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z sanitizer flags.
# Seeds are read from fuzz/corpus/<target>/ (committed, replayed by tests/fuzz_corpus.rs);
# what libFuzzer finds goes to a scratch corpus under the target directory, and crashes to
# fuzz/artifacts/<target>/. To keep a finding: copy it into fuzz/corpus/<target>/, fix, rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(labels csr names api_body acme_jws http_request)
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
target_dir=${CARGO_TARGET_DIR:-$PWD/fuzz/target}/fuzz

# Longest input each target reads: a few containers of labels, one CSR, a list of names, a body,
# an ACME JWS, a request head (the listener's limit is 32 KiB).
declare -A max_len=([labels]=8192 [csr]=8192 [names]=4096 [api_body]=16384 [acme_jws]=16384 [http_request]=32768)

for t in "${targets[@]}"; do
    cargo fuzz build --target-dir "$target_dir" "$t"
done

status=0
for t in "${targets[@]}"; do
    scratch="$target_dir/corpus/$t"
    mkdir -p "$scratch" "fuzz/artifacts/$t"
    echo "=== $t: ${seconds}s"
    if ! cargo fuzz run --target-dir "$target_dir" "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="${max_len[$t]:-4096}" \
        -timeout=10 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/"; then
        echo "!!! $t found a crash: see fuzz/artifacts/$t/" >&2
        status=1
    fi
done
exit $status
