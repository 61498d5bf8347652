#!/usr/bin/env bash
# The benchmark ablation of docs/ablations.md ("The benchmark ablation: design"), as
# designed: 5 variants x 5 seeds after a SAML sweep on the validation tracks.
#
#   bash benchmarks/ablation_grid.sh [WORKDIR] [more ablation.py flags]
#
# Meant for a GPU (every seed of a variant trains at once); needs no TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="${1:-/tmp/damer_benchmark_grid}"
shift || true
python ablation.py --config=configs/benchmark.py --workdir="$workdir" \
    --variants=full,no_pcl,no_saml,no_dsaf,baseline --seeds=0,1,2,3,4 \
    --saml_sweep=0.1:0.1,0.5:0.1,0.5:0.2 "$@"
