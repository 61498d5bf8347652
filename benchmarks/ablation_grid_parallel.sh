#!/usr/bin/env bash
# The grid of benchmarks/ablation_grid.sh (docs/ablations.md), scheduled as parallel
# processes sharing one GPU, so that their compilations overlap. Same programs, seeds
# and choices; only the order differs:
#   1. the benchmark's arrays are generated once (cached in config.dataset.data_dir);
#   2. in parallel: the full model under each SAML setting of the sweep, and the two
#      variants without SAML (no_saml, baseline: the sweep cannot change them);
#   3. ablation.py chooses the SAML setting on the validation tracks (no training);
#   4. in parallel: no_pcl and no_dsaf with the chosen setting;
#   5. ablation.py finds every variant trained and writes the report.
#
#   bash benchmarks/ablation_grid_parallel.sh WORKDIR [--config.<field>=<value> ...]
#
# GRID_SECONDS (environment) bounds the whole script: every process gets only the
# time left and is killed at the deadline (what finished by then stays in WORKDIR).
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="$1"
shift
overrides=("$@")
settings=(0.1:0.1 0.5:0.1 0.5:0.2)
seeds=0,1,2,3,4
final="$workdir/final"
mkdir -p "$final/sweep"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.12}"
deadline=$((SECONDS + ${GRID_SECONDS:-1000000}))

bounded() {  # bounded CMD...: CMD with the time left before the deadline.
  local left=$((deadline - SECONDS))
  if ((left <= 0)); then echo "deadline passed: not running $*" >&2; return 124; fi
  timeout -k 5 "$left" "$@"
}

run() {  # run NAME ablation.py-flags...: one variant in its own folder, logged.
  local name="$1"
  shift
  bounded python ablation.py --config=configs/benchmark.py --seeds="$seeds" \
      --workdir="$workdir/$name" "${overrides[@]}" "$@" > "$workdir/$name.log" 2>&1
}

echo "[$(date +%T)] generating the benchmark"
bounded python benchmarks/make_benchmark.py --config=configs/benchmark.py \
    "${overrides[@]}" > "$workdir/benchmark.log" 2>&1
tail -1 "$workdir/benchmark.log" > "$workdir/benchmark.json"

echo "[$(date +%T)] phase 1: sweep + no_saml + baseline"
pids=()
for setting in "${settings[@]}"; do
  w="${setting%:*}" t="${setting#*:}"
  run "sweep_w${w}_t${t}" --variants=full --config.saml.weight="$w" \
      --config.saml.temperature="$t" &
  pids+=($!)
done
run no_saml --variants=no_saml & pids+=($!)
run baseline --variants=baseline & pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || echo "a phase-1 process failed ($pid)"; done

for setting in "${settings[@]}"; do
  w="${setting%:*}" t="${setting#*:}"
  for suffix in npz json; do
    cp "$workdir/sweep_w${w}_t${t}/full.$suffix" \
        "$final/sweep/sweep_w${w}_t${t}_full.$suffix" || echo "missing sweep $setting"
  done
done
echo "[$(date +%T)] choosing SAML on the validation tracks"
sweep_flag="--saml_sweep=$(IFS=,; echo "${settings[*]}")"
run final --variants=full "$sweep_flag"
read -r w t < <(python -c "import json,sys; c=json.load(open('$final/sweep/saml_sweep.json'))['chosen']; print(c['weight'], c['temperature'])")
echo "chosen: weight $w temperature $t"

echo "[$(date +%T)] phase 2: no_pcl + no_dsaf"
pids=()
for variant in no_pcl no_dsaf; do
  run "$variant" --variants="$variant" --config.saml.weight="$w" \
      --config.saml.temperature="$t" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a phase-2 process failed ($pid)"; done

for variant in no_saml baseline no_pcl no_dsaf; do
  for suffix in npz json; do
    cp "$workdir/$variant/$variant.$suffix" "$final/" 2>/dev/null || echo "missing $variant.$suffix"
  done
done
echo "[$(date +%T)] report"
run final --variants=full,no_pcl,no_saml,no_dsaf,baseline "$sweep_flag"
cat "$final/ablation.md"
