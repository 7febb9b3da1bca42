#!/usr/bin/env python3
"""ONNX Runtime static quantization (QDQ, per-channel) as the int8 baseline resq is compared to.

    /opt/resq-venv/bin/python benches/peers/ort_quant.py [--data DIR] [--out DIR]
        [--methods MinMax,Entropy,Entropy2048,Percentile] [--formats U8S8,U8S8RR,S8S8] [--threads N]
        [--skip-resnet20] [--skip-resnet50] [--json FILE]

ResNet-20 (CIFAR-10, `DATA/models/cifar10-resnet20/resnet20.onnx`):
  * calibration: the 500 images `0950.jpg`..`0999.jpg` of every class folder of
    `DATA/images/cifar10-test/` (the same images `resq-convert --calibrate` is given);
  * evaluation: the other 9,500 images (`0000`..`0949` of each class), top-1 against the folder
    label, for fp32 and every quantized variant, plus top-1 agreement with fp32 and the mean
    relative L2 distance of the logits to fp32.
  Images are preprocessed exactly as resq's "cifar" preset does (runtime/src/preprocess.rs):
  Pillow decode, `convert("RGB")`, bilinear resize to 32x32 when needed (a no-op for CIFAR),
  then per pixel in float32 `(v * float32(1/255) - mean[c]) / std[c]` with the ImageNet
  mean/std, NCHW. Pillow decodes the JPEGs with libjpeg-turbo; resq's CLI decodes with the
  Rust `image` crate, whose JPEG decoder can differ by a few levels on chroma-subsampled
  pixels, so compare each runtime's int8 with its *own* fp32 (drop in points, agreement).

ResNet-50 (`DATA/models/imagenet-random/resnet50.onnx`, random weights: for speed only):
  calibrated on the ImageNet JPEGs of `DATA/images/foolbox-samples/` and the photos of
  `DATA/images/real-photos/` (25 images; resize shorter side to 256, centre crop 224, the
  resq "imagenet" preset).

Quantization: `onnxruntime.quantization.quant_pre_process` (ORT's recommended shape inference
+ graph optimisation) then `quantize_static(quant_format=QDQ, per_channel=True,
weight_type=QInt8, activation_type=QUInt8 (U8S8) or QInt8 (S8S8), calibrate_method=...)`,
everything else at its default (reduce_range=False; Percentile = 99.999). Formats: U8S8, S8S8,
and U8S8RR = U8S8 with reduce_range=True (7-bit weights, ORT's advice for AVX2 machines without
VNNI, where U8S8's u8*s8 pair sums can saturate). Methods: MinMax, Percentile, Entropy (ORT's
defaults: 128 histogram bins and 128 quantized bins, which leaves the KL search a single
candidate, so it gives exactly MinMax's ranges), Entropy2048 (KL over a 2048-bin histogram
to 128 quantized bins, TensorRT style; `quantize_static` cannot pass bin counts, so the
calibrator runs here and its ranges go in through `calibration_cache_path`).
The quantized files are written to OUT (default /work/bench-models), named
`<model>-<format>-<method>.onnx`, e.g. `resnet50-u8s8-minmax.onnx`.
Evaluation sessions: ORT_ENABLE_ALL, sequential, `intra_op_num_threads = --threads` (default 1).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SCALE = np.float32(1.0 / 255.0)
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# format -> (activation type, reduce_range)
FORMATS = {"U8S8": (QuantType.QUInt8, False), "S8S8": (QuantType.QInt8, False),
           "U8S8RR": (QuantType.QUInt8, True)}
# method -> (ORT method, calibrator options or None to let quantize_static calibrate)
METHODS = {"MinMax": (CalibrationMethod.MinMax, None), "Entropy": (CalibrationMethod.Entropy, None),
           "Entropy2048": (CalibrationMethod.Entropy, {"num_bins": 2048, "num_quantized_bins": 128}),
           "Percentile": (CalibrationMethod.Percentile, None)}


def normalise(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 1x3xHxW float32, as resq's prepare_rgb8 (f32: v * scale, - mean, / std)."""
    x = (rgb.astype(np.float32) * SCALE - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def load_cifar(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (32, 32):
            im = im.resize((32, 32), Image.BILINEAR)
        return normalise(np.asarray(im))


def load_imagenet(path: Path) -> np.ndarray:
    """torchvision Resize(256) + CenterCrop(224) on a PIL image (resq's "imagenet" preset)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            size = (256, int(256 * h / w))
        else:
            size = (int(256 * w / h), 256)
        im = im.resize(size, Image.BILINEAR)
        w, h = im.size
        left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
        im = im.crop((left, top, left + 224, top + 224))
        return normalise(np.asarray(im))


class Reader(CalibrationDataReader):
    def __init__(self, name, tensors):
        self.name, self.tensors, self.i = name, tensors, 0

    def get_next(self):
        if self.i >= len(self.tensors):
            return None
        self.i += 1
        return {self.name: self.tensors[self.i - 1]}

    def rewind(self):
        self.i = 0


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def logits_of(path, xs, threads):
    s = session(path, threads)
    name = s.get_inputs()[0].name
    out = np.empty((len(xs), s.get_outputs()[0].shape[-1]), dtype=np.float32)
    t = time.perf_counter()
    for i, x in enumerate(xs):
        out[i] = s.run(None, {name: x})[0].reshape(-1)
    return out, time.perf_counter() - t


def quantize(src, dst, tensors, fmt, method):
    act_type, reduce_range = FORMATS[fmt]
    ort_method, calib_options = METHODS[method]
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        cache = None
        if calib_options is not None:
            # quantize_static does not forward histogram sizes to the calibrator: calibrate
            # here and hand it the ranges through its calibration cache.
            cal = create_calibrator(pre, None, augmented_model_path=str(Path(td) / "augmented.onnx"),
                                    calibrate_method=ort_method, extra_options=calib_options)
            cal.collect_data(Reader("input", tensors))
            cache = Path(td) / "ranges.json"
            save_tensors_data(cal.compute_data(), cache)
            del cal
        quantize_static(str(pre), str(dst), Reader("input", tensors), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=reduce_range, activation_type=act_type,
                        weight_type=QuantType.QInt8, calibrate_method=ort_method,
                        calibration_cache_path=cache)
    # The calibrator leaves an augmented model next to the working directory on some versions.
    for leftover in ("augmented_model.onnx",):
        if os.path.exists(leftover):
            os.remove(leftover)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def resnet20(args, methods, formats):
    d = args.data / "images" / "cifar10-test"
    model = args.data / "models" / "cifar10-resnet20" / "resnet20.onnx"
    calib, held, labels, held_files = [], [], [], []
    for c, cls in enumerate(CIFAR_CLASSES):
        folder = d / cls
        if not folder.is_dir():
            sys.exit(f"ort_quant.py: {folder} not found (class folders {CIFAR_CLASSES} expected)")
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() != ".jpg":
                continue
            x = load_cifar(f)
            if 950 <= int(f.stem) <= 999:
                calib.append(x)
            else:
                held.append(x)
                labels.append(c)
                held_files.append(f"{cls}/{f.name}")
    labels = np.array(labels)
    log(f"resnet20: {len(calib)} calibration images, {len(held)} held-out images")
    fp32, secs = logits_of(model, held, args.threads)
    top1_fp32 = fp32.argmax(1)
    rows = [{"variant": "fp32", "format": "fp32", "method": "-",
             "top1": float((top1_fp32 == labels).mean() * 100),
             "top5": float((np.argsort(-fp32, 1)[:, :5] == labels[:, None]).any(1).mean() * 100),
             "agreement": 100.0, "rel_l2": 0.0, "correct": int((top1_fp32 == labels).sum()),
             "images": len(held), "seconds": secs, "file": str(model)}]
    log(f"  fp32: top-1 {rows[0]['top1']:.2f}% ({secs:.1f} s)")
    for fmt in formats:
        for method in methods:
            dst = args.out / f"resnet20-{fmt.lower()}-{method.lower()}.onnx"
            t = time.perf_counter()
            quantize(model, dst, calib, fmt, method)
            qsecs = time.perf_counter() - t
            q, secs = logits_of(dst, held, args.threads)
            top1 = q.argmax(1)
            rel = np.linalg.norm(q - fp32, axis=1) / np.maximum(np.linalg.norm(fp32, axis=1), 1e-30)
            row = {"variant": f"{fmt} {method}", "format": fmt, "method": method,
                   "top1": float((top1 == labels).mean() * 100),
                   "top5": float((np.argsort(-q, 1)[:, :5] == labels[:, None]).any(1).mean() * 100),
                   "agreement": float((top1 == top1_fp32).mean() * 100), "rel_l2": float(rel.mean()),
                   "correct": int((top1 == labels).sum()), "images": len(held), "seconds": secs,
                   "quantize_seconds": qsecs, "file": str(dst)}
            rows.append(row)
            log(f"  {row['variant']}: top-1 {row['top1']:.2f}%, agreement {row['agreement']:.2f}%, "
                f"rel L2 {row['rel_l2']:.4f} (quantize {qsecs:.1f} s, eval {secs:.1f} s)")
    return {"model": str(model), "calibration_images": len(calib), "held_out_images": len(held), "rows": rows}


def resnet50(args, formats):
    model = args.data / "models" / "imagenet-random" / "resnet50.onnx"
    files = sorted((args.data / "images" / "foolbox-samples").glob("imagenet_*.jpg"))
    files += sorted((args.data / "images" / "real-photos").glob("*.*"))
    files = [f for f in files if f.suffix.lower() in (".jpg", ".jpeg", ".png")]
    calib = [load_imagenet(f) for f in files]
    log(f"resnet50: calibrating on {len(calib)} images")
    out = []
    for fmt in [f for f in formats if f != "U8S8RR"]:
        dst = args.out / f"resnet50-{fmt.lower()}-minmax.onnx"
        t = time.perf_counter()
        quantize(model, dst, calib, fmt, "MinMax")
        out.append({"format": fmt, "method": "MinMax", "file": str(dst), "quantize_seconds": time.perf_counter() - t})
        log(f"  wrote {dst} ({time.perf_counter() - t:.1f} s)")
    return {"model": str(model), "calibration_images": len(calib), "files": out}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=Path("/work/bench-models"))
    p.add_argument("--methods", default="MinMax,Entropy,Entropy2048,Percentile")
    p.add_argument("--formats", default="U8S8,U8S8RR,S8S8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-resnet20", action="store_true")
    p.add_argument("--skip-resnet50", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    formats = [f for f in args.formats.split(",") if f]
    for m in methods:
        if m not in METHODS:
            sys.exit(f"ort_quant.py: unknown method {m} (known: {', '.join(METHODS)})")
    for f in formats:
        if f not in FORMATS:
            sys.exit(f"ort_quant.py: unknown format {f} (known: {', '.join(FORMATS)})")
    if not args.data.is_dir():
        sys.exit(f"ort_quant.py: data folder {args.data} not found (pass --data)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "onnxruntime": ort.__version__,
              "numpy": np.__version__, "pillow": Image.__version__, "python": platform.python_version(),
              "cpu": platform.processor() or platform.machine(), "threads": args.threads}
    try:
        with open("/proc/cpuinfo") as f:
            result["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if not args.skip_resnet20:
        result["resnet20"] = resnet20(args, methods, formats)
    if not args.skip_resnet50:
        result["resnet50"] = resnet50(args, formats)
    if "resnet20" in result:
        print(f"ResNet-20 on {result['resnet20']['held_out_images']} held-out CIFAR-10 images "
              f"(calibrated on {result['resnet20']['calibration_images']}), onnxruntime {ort.__version__}")
        print(f"{'variant':<18} {'top-1 %':>8} {'top-5 %':>8} {'agree %':>8} {'rel L2':>8} {'correct':>8}")
        for r in result["resnet20"]["rows"]:
            print(f"{r['variant']:<18} {r['top1']:>8.2f} {r['top5']:>8.2f} {r['agreement']:>8.2f} "
                  f"{r['rel_l2']:>8.4f} {r['correct']:>8}")
    if "resnet50" in result:
        for f in result["resnet50"]["files"]:
            print(f"ResNet-50 {f['format']} {f['method']}: {f['file']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
