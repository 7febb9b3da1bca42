#!/usr/bin/env bash
# Side-by-side latency of resq and ONNX Runtime, batch 1. Two modes:
#
# 1. One ONNX model through both runtimes (fp32):
#      benches/peers/compare.sh MODEL.onnx [--threads "1 2"] [--rounds 5] [--iters 20] [--preprocess P]
#    Converts MODEL.onnx with the release resq-convert, then for each thread count runs
#    `resq bench --json` and ONNX Runtime (ort_bench.py) alternately, `rounds` times each, and
#    prints the median of the per-round medians and the ratio resq/ORT.
#
# 2. Ready-made files of several precisions (e.g. resq fp32/fp16/int8 vs an ORT QDQ int8 model):
#      benches/peers/compare.sh --resq fp32=r50.resq --resq int8=r50-int8.resq --resq fp16=r50-fp16.resq \
#          --ort ort-u8s8=/work/bench-models/resnet50-u8s8-minmax.onnx [--ort NAME=FILE.onnx ...] \
#          [--threads "1 2"] [--rounds 5] [--iters 20]
#    Each round runs every file once, in the order given (A, B, C, A, B, C, ...), so all see the
#    same machine state. Prints per thread count and file the median of the per-round medians,
#    its ratio to the first --ort file (vs_ort) and to the resq file named fp32, else the first
#    --resq file (vs_fp32). Nothing is converted.
#
# Alternating the runtimes in one run is what makes the comparison fair on a noisy machine.
# ONNX Runtime comes from a venv: $RESQ_PEERS_VENV (default benches/peers/.venv, created with
# `pip install onnxruntime==1.32.* numpy` if missing). The release binaries are built with
# cargo (honouring CARGO_TARGET_DIR) unless RESQ_BIN names a resq binary to use (mode 2 only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage='usage: compare.sh MODEL.onnx [--threads "1 2"] [--rounds N] [--iters N] [--preprocess P]
   or: compare.sh --resq NAME=FILE.resq ... [--ort NAME=FILE.onnx ...] [--threads "1 2"] [--rounds N] [--iters N]'
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
model=
case "$1" in
  -*) ;;
  *) model=$1; shift ;;
esac
threads="1 2"; rounds=5; iters=20; pre=none
names=(); kinds=(); files=()
add_file() { # kind spec
  local name=${2%%=*} file=${2#*=}
  if [ -z "$name" ] || [ "$name" = "$2" ] || [ -z "$file" ]; then echo "--$1 expects NAME=FILE, got '$2'" >&2; exit 2; fi
  [ -f "$file" ] || { echo "--$1 $name: $file not found" >&2; exit 1; }
  names+=("$name"); kinds+=("$1"); files+=("$file")
}
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --preprocess) pre=$2; shift 2 ;;
    --resq) add_file resq "$2"; shift 2 ;;
    --ort) add_file ort "$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
if [ -n "$model" ] && [ ${#names[@]} -gt 0 ]; then
  echo "give either MODEL.onnx or --resq/--ort files, not both" >&2; exit 2
fi
if [ -z "$model" ] && [ ${#names[@]} -eq 0 ]; then echo "$usage" >&2; exit 2; fi
venv=${RESQ_PEERS_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "onnxruntime==1.32.*" numpy
fi
py="$venv/bin/python"
tdir=${CARGO_TARGET_DIR:-$root/target}
if [ -n "$model" ]; then
  (cd "$root" && cargo build --release -q -p resq -p resq-convert)
  resq="$tdir/release/resq"
elif [ -n "${RESQ_BIN:-}" ]; then
  resq=$RESQ_BIN
else
  (cd "$root" && cargo build --release -q -p resq)
  resq="$tdir/release/resq"
fi
field() { "$py" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
median() { "$py" -c "import statistics,sys; print('%.3f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
if [ -n "$model" ]; then
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$tdir/release/resq-convert" "$model" -o "$out/model.resq" --preprocess "$pre" >/dev/null
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
exit 0
fi

# Mode 2: given files, alternating within each round.
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  date: $(date -u '+%F %H:%M UTC')"
echo "resq: $("$resq" --version) ($resq)  onnxruntime: $("$py" -c 'import onnxruntime; print(onnxruntime.__version__)')"
echo "rounds: $rounds  iters per round: $iters (warm-up 3)"
for i in "${!names[@]}"; do echo "  ${names[$i]} (${kinds[$i]}): ${files[$i]}"; done
ort_ref=-1; fp32_ref=-1
for i in "${!names[@]}"; do
  if [ "${kinds[$i]}" = ort ] && [ $ort_ref -lt 0 ]; then ort_ref=$i; fi
  if [ "${kinds[$i]}" = resq ] && [ "${names[$i]}" = fp32 ]; then fp32_ref=$i; fi
done
if [ $fp32_ref -lt 0 ]; then
  for i in "${!names[@]}"; do
    if [ "${kinds[$i]}" = resq ]; then fp32_ref=$i; break; fi
  done
fi
ratio() { if [ "$2" = - ]; then echo -; else "$py" -c "print('%.2f' % ($1/$2))"; fi; }
printf '%-8s %-14s %-8s %-11s %-8s %-8s %s\n' threads name runtime median_ms vs_ort vs_fp32 isa
for t in $threads; do
  runs=(); isas=()
  for _ in $(seq "$rounds"); do
    for i in "${!names[@]}"; do
      if [ "${kinds[$i]}" = resq ]; then
        j=$("$resq" bench "${files[$i]}" --threads "$t" --iters "$iters" --warmup 3 --json)
        isas[$i]=$(echo "$j" | field isa)
      else
        j=$("$py" "$here/ort_bench.py" "${files[$i]}" --threads "$t" --iters "$iters" --warmup 3)
        isas[$i]=-
      fi
      runs[$i]="${runs[$i]:-} $(echo "$j" | field median_ms)"
    done
  done
  meds=()
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    meds[$i]=$(median ${runs[$i]})
  done
  for i in "${!names[@]}"; do
    vo=-; vf=-
    if [ $ort_ref -ge 0 ]; then vo=$(ratio "${meds[$i]}" "${meds[$ort_ref]}"); fi
    if [ $fp32_ref -ge 0 ]; then vf=$(ratio "${meds[$i]}" "${meds[$fp32_ref]}"); fi
    printf '%-8s %-14s %-8s %-11s %-8s %-8s %s\n' "$t" "${names[$i]}" "${kinds[$i]}" "${meds[$i]}" "$vo" "$vf" "${isas[$i]}"
  done
done
