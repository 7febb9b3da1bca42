#!/usr/bin/env bash
# Side-by-side latency of resq and ONNX Runtime on the same ONNX model, batch 1.
#
#   benches/peers/compare.sh MODEL.onnx [--threads "1 2"] [--rounds 5] [--iters 20] [--preprocess P]
#
# Converts MODEL.onnx with the release resq-convert, then for each thread count runs
# `resq bench --json` and ONNX Runtime (ort_bench.py) alternately, `rounds` times each, and
# prints the median of the per-round medians and the ratio resq/ORT. Alternating A and B in one
# run is what makes the comparison fair on a noisy machine.
# ONNX Runtime comes from a venv: $RESQ_PEERS_VENV (default benches/peers/.venv, created with
# `pip install onnxruntime==1.32.* numpy` if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=${1:?usage: compare.sh MODEL.onnx [--threads "1 2"] [--rounds N] [--iters N] [--preprocess P]}
shift
threads="1 2"; rounds=5; iters=20; pre=none
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --preprocess) pre=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
venv=${RESQ_PEERS_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "onnxruntime==1.32.*" numpy
fi
py="$venv/bin/python"
(cd "$root" && cargo build --release -q -p resq -p resq-convert)
tdir=${CARGO_TARGET_DIR:-$root/target}
resq="$tdir/release/resq"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$tdir/release/resq-convert" "$model" -o "$out/model.resq" --preprocess "$pre" >/dev/null
field() { "$py" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
median() { "$py" -c "import statistics,sys; print('%.3f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
echo "model: $(basename "$model")  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  date: $(date -u +%F)"
echo "resq: $("$resq" --version)  onnxruntime: $("$py" -c 'import onnxruntime; print(onnxruntime.__version__)')"
printf '%-8s %-12s %-12s %-8s %s\n' threads resq_ms ort_ms ratio isa
for t in $threads; do
  r=(); o=(); isa=?
  for _ in $(seq "$rounds"); do
    j=$("$resq" bench "$out/model.resq" --threads "$t" --iters "$iters" --warmup 3 --json)
    r+=("$(echo "$j" | field median_ms)"); isa=$(echo "$j" | field isa)
    j=$("$py" "$here/ort_bench.py" "$model" --threads "$t" --iters "$iters" --warmup 3)
    o+=("$(echo "$j" | field median_ms)")
  done
  rm_=$(median "${r[@]}"); om=$(median "${o[@]}")
  printf '%-8s %-12s %-12s %-8s %s\n' "$t" "$rm_" "$om" "$("$py" -c "print('%.2f' % ($rm_/$om))")" "$isa"
done
