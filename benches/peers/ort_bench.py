#!/usr/bin/env python3
"""Time ONNX Runtime on one ONNX model, batch 1, and print one JSON object (same fields as
`resq bench --json`). Used by compare.sh; the input is fixed-seed random like resq's."""
import argparse, json, statistics, time

import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--iters", type=int, default=30)
p.add_argument("--warmup", type=int, default=5)
a = p.parse_args()

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in inp.shape]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(a.warmup):
    sess.run(None, {inp.name: x})
ts = []
for _ in range(a.iters):
    t = time.perf_counter()
    sess.run(None, {inp.name: x})
    ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
print(json.dumps({
    "runtime": "onnxruntime " + ort.__version__,
    "threads": a.threads,
    "iters": a.iters,
    "min_ms": ts[0],
    "median_ms": statistics.median(ts),
    "p90_ms": ts[min(len(ts) - 1, int(0.9 * len(ts)))],
}))
