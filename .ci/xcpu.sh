#!/usr/bin/env bash
# Cross-CPU int8 bytes on a large model (issue 5 item 2): converts the ResNet-50 export of
# ../shared/data to int8 on this x86 host, runs it here at the scalar and the best tier and
# checks they agree, then runs runtime/tests/xcpu_int8.rs natively and under qemu-user as a
# Cortex-A72, a Cortex-A76 and (armv7) a Cortex-A7, each comparing its output bytes with the
# host's. ResNet-20's int8 bytes are checked on every CPU by runtime/tests/int8_golden.rs.
#
# Usage: bash .ci/xcpu.sh [--native-only]. The cross toolchain must be installed
# (../shared/ci/setup-cross.sh); .ci/run calls this after its cross test stages, which have
# already built the test binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=../shared/data
OUT=$PWD/target/xcpu
rm -rf "$OUT"
mkdir -p "$OUT/calib"
# Five ImageNet-sized samples calibrate it (the weights are random: the point is bytes, not
# accuracy); the 20 preprocessed rows of the ONNX Runtime reference are the inputs.
n=0
for f in "$DATA"/images/foolbox-samples/imagenet_*.jpg; do
    [ $n -lt 5 ] || break
    cp "$f" "$OUT/calib/"
    n=$((n + 1))
done
[ $n -eq 5 ] || { echo "xcpu: expected 5 ImageNet samples in $DATA/images/foolbox-samples" >&2; exit 1; }
cp "$DATA/refs/resnet50/input.npy" "$OUT/input.npy"

cargo build -p resq-convert -p resq
bin=target/debug
"$bin/resq-convert" "$DATA/models/imagenet-random/resnet50.onnx" --precision int8 \
    --calibrate "$OUT/calib" --calibration-count 5 -o "$OUT/model.resq"
"$bin/resq" run "$OUT/model.resq" --input "$OUT/input.npy" --output "$OUT/expected.npy" --isa generic --threads 1
"$bin/resq" run "$OUT/model.resq" --input "$OUT/input.npy" --output "$OUT/best.npy" --threads 2
cmp "$OUT/expected.npy" "$OUT/best.npy"
echo "xcpu: x86 scalar and best tier give identical bytes on all 20 rows"

export RESQ_XCPU_DIR=$OUT
RESQ_XCPU_ROWS=4 cargo test -p resq --test xcpu_int8 -- --nocapture
[ "${1:-}" = --native-only ] && exit 0

run_cross() {
    local triple=$1 env_script=$2 cpu=$3 rows=$4
    (
        export QEMU_CPU=$cpu RESQ_XCPU_ROWS=$rows
        # shellcheck source=/dev/null
        source "../shared/ci/$env_script" auto
        echo "xcpu: $triple as $cpu, $rows row(s)"
        cargo test -p resq --target "$triple" --test xcpu_int8 -- --nocapture
    )
}
run_cross aarch64-unknown-linux-gnu env-aarch64.sh cortex-a72 1
run_cross aarch64-unknown-linux-gnu env-aarch64.sh cortex-a76 1
run_cross armv7-unknown-linux-gnueabihf env-armv7.sh cortex-a7 1
echo "xcpu: int8 ResNet-50 bytes identical on x86 (generic, best), A72, A76 and armv7"
