#!/usr/bin/env bash
# What splitting a batch over a Slurm array costs on one machine: the same cases segmented by
# one process (all cores) and by a 4-task job array (one core per task), side by side in one
# run, on a one-node Slurm started here (slurm-local.sh; root). Prints both wall times (array:
# submission to the last task's end, as a user waits for it), the cases per part, and the sum of
# the per-case seconds each way.
#   scripts/cluster/overhead.sh CASES_DIR [ROUNDS]
# CASES_DIR: a folder of <case>_0000.nii.gz (e.g. links to ../shared/data/btcv/*_0000.nii.gz).
# FLARE_BIN [default target/release/flare], FLARE_MODEL [default built-in]; work in
# work-data/cluster-overhead/.
set -euo pipefail
cd "$(dirname "$0")/../.."
cases="$(cd "${1:?usage: $0 CASES_DIR [ROUNDS]}" && pwd)"
rounds="${2:-2}"
flare="$(realpath "${FLARE_BIN:-target/release/flare}")"
[ -x "$flare" ] || { echo "overhead.sh: no flare at $flare (cargo build --release -p flare-cli)" >&2; exit 1; }
work="$PWD/work-data/cluster-overhead"
rm -rf "$work"
mkdir -p "$work/logs"
cluster="$(mktemp -d /tmp/flare-slurm-XXXXXX)"
scripts/cluster/slurm-local.sh install
scripts/cluster/slurm-local.sh start "$cluster" >/dev/null
trap 'scripts/cluster/slurm-local.sh stop "$cluster"; rm -rf "$cluster"' EXIT
export SLURM_CONF="$cluster/slurm.conf" FLARE_BIN="$flare"
model=()
if [ -n "${FLARE_MODEL:-}" ]; then model=(--model "$FLARE_MODEL"); fi
now() { date +%s.%N; }
seconds_sum() { # the per-case seconds in a folder's records
  python3 -c 'import json,glob,sys; print("%.2f" % sum(json.load(open(f))["seconds"] or 0 for f in glob.glob(sys.argv[1] + "/.flare-records/*.json")))' "$1"
}
ncases="$(find "$cases" -maxdepth 1 -name '*_0000.nii.gz' | wc -l)"
echo "overhead.sh: $ncases cases, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for round in $(seq "$rounds"); do
  out="$work/single-$round"
  t0="$(now)"
  "$flare" --threads "$(nproc)" segment -i "$cases" -o "$out" "${model[@]}" >/dev/null 2>"$work/single-$round.err"
  t1="$(now)"
  single="$(awk "BEGIN { print $t1 - $t0 }")"
  out="$work/array-$round"
  t0="$(now)"
  job="$(sbatch --parsable --array=0-3 --cpus-per-task=1 --mem=2G \
    --output="$work/logs/flare-%A_%a.out" scripts/cluster/slurm-array.sbatch "$cases" "$out")"
  while [ -n "$(squeue -h -j "$job")" ]; do sleep 0.05; done
  t1="$(now)"
  array="$(awk "BEGIN { print $t1 - $t0 }")"
  "$flare" gather -i "$cases" -o "$out" >/dev/null 2>&1 || { echo "overhead.sh: the array left cases undone" >&2; exit 1; }
  parts="$(for k in 0 1 2 3; do grep -c ': wrote ' "$work/logs/flare-${job}_$k.out" || true; done | paste -sd/)"
  printf 'round %s: one process %.2f s (per-case sum %s s) | 4-task array %.2f s (per-case sum %s s, cases per part %s) | array/one %.2f\n' \
    "$round" "$single" "$(seconds_sum "$work/single-$round")" "$array" "$(seconds_sum "$out")" "$parts" \
    "$(awk "BEGIN { print $array / $single }")"
done
echo "overhead.sh: load average after $(cut -d' ' -f1-3 /proc/loadavg)"
