#!/usr/bin/env bash
# Runs one afl target for a while and prints its statistics.
#   fuzz/run.sh TARGET MINUTES [extra afl-fuzz options]
# TARGET: nifti, nifti_gz, dicom_file, dicom_folder, model_file. Needs cargo-afl
# (`cargo install cargo-afl`). Builds the targets, fuzzes from fuzz/seeds/TARGET (or resumes
# fuzz/out/TARGET when it exists), then prints the fuzzer_stats lines that matter; the whole
# file stays in fuzz/out/TARGET/default/fuzzer_stats, crashes in .../crashes/, hangs in
# .../hangs/. AFL_FUZZ_NICE (default 15) is the niceness; FUZZ_MEM_MB (default 1024) afl's
# memory limit per execution. The harness's scratch files go to fuzz/out/TARGET/tmp (removed
# after the run).
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET MINUTES [afl-fuzz options]}
minutes=${2:?usage: fuzz/run.sh TARGET MINUTES [afl-fuzz options]}
shift 2
cd "$(dirname "$0")"
case $target in
nifti | nifti_gz | dicom_file | dicom_folder | model_file) ;;
*) echo "unknown target $target" >&2; exit 2 ;;
esac
nice -n "${AFL_FUZZ_NICE:-15}" cargo afl build --release --bin "$target"
input=(-i "seeds/$target")
# Resume an earlier run of the same target instead of starting over.
[ -f "out/$target/default/fuzzer_stats" ] && input=(-i -)
mkdir -p "out/$target/tmp"
export FLARE_FUZZ_TMP=$PWD/out/$target/tmp
# No UI (a log instead); no core_pattern or CPU-governor checks (a shared VM, not root's to tune).
AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
    nice -n "${AFL_FUZZ_NICE:-15}" cargo afl fuzz "${input[@]}" -o "out/$target" \
    -m "${FUZZ_MEM_MB:-1024}" -t 2000 -V "$((minutes * 60))" "$@" \
    "target/release/$target" >"out/$target/afl.log" 2>&1 || {
    tail -30 "out/$target/afl.log" >&2
    exit 1
}
rm -rf "out/$target/tmp"
stats=out/$target/default/fuzzer_stats
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|edges_found|total_edges|saved_crashes|saved_hangs|stability) ' "$stats"
echo "full statistics: fuzz/$stats"
