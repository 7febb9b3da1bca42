//! Graph rewrites on the IR: identity removal, BatchNorm folding, bias / residual / activation
//! fusion. Each pass keeps the node order valid (inputs are produced before they are used).
// The passes index `g.nodes` while rewriting it, so they loop over indices.
#![allow(clippy::needless_range_loop)]

use crate::ir::{Act, Data, Graph, Op, Tensor, TensorId};
use crate::onnx::data_type;

/// Run every pass in order.
pub fn run(g: &mut Graph) {
    g.remove_dead_nodes();
    remove_copies(g);
    nchw_input(g);
    cancel_transposes(g);
    sink_transposes(g);
    cancel_transposes(g);
    remove_copies(g);
    fold_batchnorm(g);
    merge_slices(g);
    fuse_linear_bias(g);
    fuse_residual_add(g);
    fuse_activation(g);
    g.remove_dead_nodes();
}

fn f32s(g: &Graph, t: Option<TensorId>) -> Option<&[f32]> {
    match t.and_then(|t| g.tensors[t].value.as_ref()) {
        Some(Data::F32(v)) => Some(v),
        _ => None,
    }
}

fn new_const(g: &mut Graph, name: String, shape: Vec<usize>, data: Vec<f32>) -> TensorId {
    g.add_tensor(Tensor { name, dtype: data_type::FLOAT, shape: Some(shape), value: Some(Data::F32(data)) })
}

fn retain(g: &mut Graph, dead: &[bool]) {
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        !dead[i - 1]
    });
}

/// An NHWC image input (TensorFlow / Keras graphs: `[N, H, W, C]` with C of 1 or 3) that is
/// only read through `Transpose(perm [0, 3, 1, 2])` becomes an NCHW input, as resq models take
/// (ONNX order); the transposes become plain copies of it, which [`remove_copies`] drops.
pub fn nchw_input(g: &mut Graph) {
    let x = g.input;
    let s = g.shape(x).to_vec();
    if s.len() != 4 || !matches!(s[3], 1 | 3) || matches!(s[1], 1 | 3) || x == g.output {
        return;
    }
    let readers: Vec<usize> =
        (0..g.nodes.len()).filter(|&i| g.nodes[i].inputs.iter().flatten().any(|&t| t == x)).collect();
    let all_transposes = !readers.is_empty()
        && readers.iter().all(|&i| {
            let n = &g.nodes[i];
            n.op == (Op::Transpose { perm: vec![0, 3, 1, 2] }) && n.inputs.len() == 1
        });
    if !all_transposes {
        return;
    }
    g.tensors[x].shape = Some(vec![s[0], s[3], s[1], s[2]]);
    for i in readers {
        g.nodes[i].op = Op::Copy;
    }
}

/// `Relu/Clip(Transpose(x))` and `Add(Transpose(a), Transpose(b))` (same permutation, same
/// shapes) become the elementwise op on the untransposed tensors followed by one Transpose,
/// repeatedly: the transposes that graphs converted from TensorFlow put around every op
/// (NHWC elementwise ops between NCHW convolutions) then meet their inverses and cancel.
/// A transpose that other nodes still read stays for them (and usually cancels there).
pub fn sink_transposes(g: &mut Graph) {
    let mut changed = true;
    while changed {
        changed = false;
        let producers = g.producers();
        for i in 0..g.nodes.len() {
            if !matches!(g.nodes[i].op, Op::Activation(_) | Op::Add { .. }) {
                continue;
            }
            let out = g.nodes[i].outputs[0];
            let ins: Vec<Option<TensorId>> = g.nodes[i].inputs.clone();
            let mut perm: Option<Vec<usize>> = None;
            let mut sources = Vec::new();
            let ok = ins.iter().all(|t| {
                let Some(t) = *t else { return false };
                let Some(p) = producers[t] else { return false };
                let Op::Transpose { perm: pp } = &g.nodes[p].op else { return false };
                if perm.as_ref().is_some_and(|q| q != pp) {
                    return false;
                }
                perm = Some(pp.clone());
                sources.push(g.nodes[p].inputs[0]);
                g.shape(t) == g.shape(out)
            });
            let (true, Some(perm), false) = (ok, perm, ins.is_empty()) else { continue };
            let src_shape = sources[0].map(|s| g.shape(s).to_vec()).unwrap_or_default();
            if sources.iter().any(|s| s.map(|s| g.shape(s) != src_shape.as_slice()).unwrap_or(true)) {
                continue;
            }
            let name = g.nodes[i].name.clone();
            let tmp = g.add_tensor(Tensor {
                name: format!("{}:untransposed", g.tensors[out].name),
                dtype: data_type::FLOAT,
                shape: Some(src_shape),
                value: None,
            });
            let n = &mut g.nodes[i];
            n.inputs = sources;
            n.outputs = vec![tmp];
            g.nodes.insert(
                i + 1,
                crate::ir::Node {
                    name: format!("{name}+transpose"),
                    op: Op::Transpose { perm },
                    inputs: vec![Some(tmp)],
                    outputs: vec![out],
                },
            );
            g.remove_dead_nodes();
            changed = true;
            break;
        }
    }
}

/// `Transpose(Transpose(x))` whose permutations compose to the identity reads `x` directly
/// (the outer becomes a copy; the inner one goes when nothing else reads it). tf2onnx leaves
/// such pairs around NHWC / NCHW boundaries.
pub fn cancel_transposes(g: &mut Graph) {
    for i in 0..g.nodes.len() {
        let Op::Transpose { perm: outer } = &g.nodes[i].op else { continue };
        let Some(mid) = g.nodes[i].input(0) else { continue };
        let Some(p) = g.producers()[mid] else { continue };
        let Op::Transpose { perm: inner } = &g.nodes[p].op else { continue };
        // y[d] = mid[outer[d]] = x[inner[outer[d]]].
        if inner.len() != outer.len() || (0..outer.len()).any(|d| inner[outer[d]] != d) {
            continue;
        }
        let src = g.nodes[p].inputs[0];
        let n = &mut g.nodes[i];
        n.op = Op::Copy;
        n.inputs = vec![src];
        g.stats.removed += 1;
    }
    g.remove_dead_nodes();
}

/// Copies that do not change the shape (Identity, Dropout, Cast to f32) are removed; chains
/// of reshaping copies collapse into one.
pub fn remove_copies(g: &mut Graph) {
    let mut dead = vec![false; g.nodes.len()];
    for i in 0..g.nodes.len() {
        if g.nodes[i].op != Op::Copy {
            continue;
        }
        let (Some(x), y) = (g.nodes[i].input(0), g.nodes[i].outputs[0]) else { continue };
        let uses = g.use_counts();
        let producers = g.producers();
        let same_shape = g.shape(x) == g.shape(y);
        if same_shape && y != g.output {
            g.replace_uses(y, x);
            dead[i] = true;
            g.stats.removed += 1;
        } else if same_shape && uses[x] == 1 && x != g.input && !g.tensors[x].is_const() {
            // y is the graph output: let x's producer write it directly.
            if let Some(p) = producers[x] {
                g.nodes[p].outputs = vec![y];
                dead[i] = true;
                g.stats.removed += 1;
            }
        } else if let Some(p) = producers[x] {
            // Copy of a copy: read the first copy's input.
            if g.nodes[p].op == Op::Copy && uses[x] == 1 && x != g.output {
                g.nodes[i].inputs[0] = g.nodes[p].inputs[0];
                g.stats.removed += 1;
            }
        }
    }
    retain(g, &dead);
    g.remove_dead_nodes();
}

/// BatchNormalization after a convolution whose output nobody else reads is folded into the
/// convolution's weights and bias; any other BatchNormalization becomes a ChannelAffine.
///
/// With `k = scale / sqrt(var + eps)`: `w'[o] = w[o] * k[o]`, `b'[o] = (b[o] - mean[o]) * k[o] + bias[o]`.
pub fn fold_batchnorm(g: &mut Graph) {
    let mut dead = vec![false; g.nodes.len()];
    for i in 0..g.nodes.len() {
        let Op::BatchNorm { epsilon } = g.nodes[i].op else { continue };
        let node = g.nodes[i].clone();
        let x = node.inputs[0].unwrap_or(usize::MAX);
        let (Some(scale), Some(beta), Some(mean), Some(var)) =
            (f32s(g, node.input(1)), f32s(g, node.input(2)), f32s(g, node.input(3)), f32s(g, node.input(4)))
        else {
            continue;
        };
        let c = scale.len();
        let k: Vec<f32> = (0..c).map(|j| scale[j] / (var[j] + epsilon).sqrt()).collect();
        let shift: Vec<f32> = (0..c).map(|j| beta[j] - mean[j] * k[j]).collect();
        let uses = g.use_counts();
        let producer = g.producers()[x];
        let foldable = producer.filter(|&p| {
            let pn = &g.nodes[p];
            matches!(pn.op, Op::Conv2d { act: Act::None, .. })
                && pn.input(3).is_none()
                && uses[x] == 1
                && x != g.output
                && f32s(g, pn.input(1)).is_some()
        });
        if let Some(p) = foldable {
            let conv = g.nodes[p].clone();
            let w = f32s(g, conv.input(1)).unwrap_or(&[]).to_vec();
            let per_o = w.len() / c.max(1);
            let wf: Vec<f32> = w.iter().enumerate().map(|(idx, &v)| v * k[idx / per_o]).collect();
            let old_b = f32s(g, conv.input(2)).map(|b| b.to_vec()).unwrap_or_else(|| vec![0.0; c]);
            let bf: Vec<f32> = (0..c).map(|j| (old_b[j] - mean[j]) * k[j] + beta[j]).collect();
            let wshape = g.shape(conv.inputs[1].unwrap_or(0)).to_vec();
            let wid = new_const(g, format!("{}.weight+bn", conv.name), wshape, wf);
            let bid = new_const(g, format!("{}.bias+bn", conv.name), vec![c], bf);
            let pn = &mut g.nodes[p];
            pn.inputs.resize(3, None);
            pn.inputs[1] = Some(wid);
            pn.inputs[2] = Some(bid);
            pn.outputs = node.outputs.clone();
            pn.name = format!("{}+{}", pn.name, node.name);
            dead[i] = true;
            g.stats.bn_folded += 1;
        } else {
            let sid = new_const(g, format!("{}.scale", node.name), vec![c], k);
            let hid = new_const(g, format!("{}.shift", node.name), vec![c], shift);
            let n = &mut g.nodes[i];
            n.op = Op::ChannelAffine { act: Act::None };
            n.inputs = vec![Some(x), Some(sid), Some(hid)];
            g.stats.bn_affine += 1;
        }
    }
    retain(g, &dead);
}

/// `Slice(Slice(x))` where the inner slice is read only by the outer one becomes one slice:
/// `y[j] = x[s1 + (s2 + j*t2)*t1]`, i.e. start `s1 + s2*t1`, step `t1*t2` per dim.
pub fn merge_slices(g: &mut Graph) {
    for i in 0..g.nodes.len() {
        let Op::Slice { starts: s2, steps: t2 } = &g.nodes[i].op else { continue };
        let Some(mid) = g.nodes[i].input(0) else { continue };
        let uses = g.use_counts();
        let Some(p) = g.producers()[mid] else { continue };
        let Op::Slice { starts: s1, steps: t1 } = &g.nodes[p].op else { continue };
        if uses[mid] != 1 || mid == g.output || s1.len() != s2.len() {
            continue;
        }
        let starts = (0..s1.len()).map(|d| s1[d] + s2[d] * t1[d]).collect();
        let steps = (0..s1.len()).map(|d| t1[d] * t2[d]).collect();
        let (inner_in, inner_name) = (g.nodes[p].inputs[0], g.nodes[p].name.clone());
        let n = &mut g.nodes[i];
        n.op = Op::Slice { starts, steps };
        n.inputs[0] = inner_in;
        n.name = format!("{inner_name}+{}", n.name);
        g.stats.removed += 1;
    }
    g.remove_dead_nodes();
}

/// `Add(Linear(x), c)` with a constant `c` over the output features becomes the Linear's bias.
pub fn fuse_linear_bias(g: &mut Graph) {
    let mut dead = vec![false; g.nodes.len()];
    for i in 0..g.nodes.len() {
        if g.nodes[i].op != (Op::Add { act: Act::None }) {
            continue;
        }
        let uses = g.use_counts();
        let producers = g.producers();
        let node = g.nodes[i].clone();
        for k in 0..2 {
            let (Some(a), Some(c)) = (node.input(k), node.input(1 - k)) else { continue };
            let Some(p) = producers[a] else { continue };
            if g.nodes[p].op != (Op::Linear { act: Act::None }) || uses[a] != 1 || a == g.output {
                continue;
            }
            let n = *g.shape(a).last().unwrap_or(&0);
            let cs = g.shape(c).to_vec();
            let Some(cv) = f32s(g, Some(c)) else { continue };
            if !(cs == [n] || cs == [1, n]) || g.shape(a) != g.shape(node.outputs[0]) {
                continue;
            }
            let lin = g.nodes[p].clone();
            let old = f32s(g, lin.input(2)).map(|b| b.to_vec()).unwrap_or_else(|| vec![0.0; n]);
            let b: Vec<f32> = old.iter().zip(cv).map(|(x, y)| x + y).collect();
            let bid = new_const(g, format!("{}.bias", lin.name), vec![n], b);
            let pn = &mut g.nodes[p];
            pn.inputs.resize(3, None);
            pn.inputs[2] = Some(bid);
            pn.outputs = node.outputs.clone();
            pn.name = format!("{}+{}", pn.name, node.name);
            dead[i] = true;
            g.stats.bias_fused += 1;
            break;
        }
    }
    retain(g, &dead);
}

/// `Add(conv_out, other)` where `conv_out` is read only by the Add and has the Add's shape:
/// the Add becomes the convolution's residual input. The convolution moves to the Add's place
/// in the order (legal: its inputs exist earlier, its only reader was the Add), so `other`
/// always exists before it runs, even when it was computed after the convolution (ResNet-20's
/// option-A shortcut is exported after the residual branch).
pub fn fuse_residual_add(g: &mut Graph) {
    let mut dead = vec![false; g.nodes.len()];
    for i in 0..g.nodes.len() {
        if g.nodes[i].op != (Op::Add { act: Act::None }) {
            continue;
        }
        let uses = g.use_counts();
        let producers = g.producers();
        let node = g.nodes[i].clone();
        let out = node.outputs[0];
        let mut best: Option<(usize, TensorId)> = None;
        for k in 0..2 {
            let (Some(a), Some(other)) = (node.input(k), node.input(1 - k)) else { continue };
            let Some(p) = producers[a] else { continue };
            let pn = &g.nodes[p];
            let fusable = matches!(pn.op, Op::Conv2d { act: Act::None, .. })
                && pn.input(3).is_none()
                && uses[a] == 1
                && a != g.output
                && other != a
                && g.shape(a) == g.shape(out)
                && g.shape(other) == g.shape(out)
                && !g.tensors[other].is_const();
            // Prefer the convolution that runs later (the other one is then already computed).
            if fusable && best.is_none_or(|(bp, _)| p > bp) {
                best = Some((p, other));
            }
        }
        if let Some((p, other)) = best {
            let mut conv = std::mem::replace(
                &mut g.nodes[p],
                crate::ir::Node { name: String::new(), op: Op::Copy, inputs: vec![], outputs: vec![] },
            );
            conv.inputs.resize(4, None);
            conv.inputs[3] = Some(other);
            conv.outputs = vec![out];
            conv.name = format!("{}+{}", conv.name, node.name);
            g.nodes[i] = conv;
            dead[p] = true;
            g.stats.residual_fused += 1;
        }
    }
    retain(g, &dead);
}

/// Relu / Clip after a Conv, Linear, Add or ChannelAffine (that has no activation yet and
/// whose output only the activation reads) moves into the producer's epilogue.
pub fn fuse_activation(g: &mut Graph) {
    let mut dead = vec![false; g.nodes.len()];
    for i in 0..g.nodes.len() {
        let Op::Activation(act) = g.nodes[i].op else { continue };
        let Some(x) = g.nodes[i].input(0) else { continue };
        let uses = g.use_counts();
        let Some(p) = g.producers()[x] else { continue };
        if uses[x] != 1 || x == g.output {
            continue;
        }
        let out = g.nodes[i].outputs[0];
        let name = g.nodes[i].name.clone();
        let pn = &mut g.nodes[p];
        match pn.op.act_mut() {
            Some(slot) if *slot == Act::None => {
                *slot = act;
                pn.outputs = vec![out];
                pn.name = format!("{}+{}", pn.name, name);
                dead[i] = true;
                g.stats.act_fused += 1;
            }
            _ => {}
        }
    }
    retain(g, &dead);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{ConvSpec, Node};

    fn act(g: &mut Graph, name: &str, shape: &[usize]) -> TensorId {
        g.add_tensor(Tensor { name: name.into(), dtype: data_type::FLOAT, shape: Some(shape.to_vec()), value: None })
    }

    fn conv_spec() -> ConvSpec {
        ConvSpec { kernel: [1, 1], strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 }
    }

    /// x -> conv(1x1, 2->2) -> bn -> relu, plus a residual add: checks the folded values.
    #[test]
    fn batchnorm_folds_into_conv_with_the_right_values() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 2, 1, 1]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]);
        let b = new_const(&mut g, "b".into(), vec![2], vec![0.5, -0.5]);
        let y = act(&mut g, "y", &[1, 2, 1, 1]);
        let s = new_const(&mut g, "s".into(), vec![2], vec![2.0, 1.0]);
        let beta = new_const(&mut g, "beta".into(), vec![2], vec![1.0, 0.0]);
        let mean = new_const(&mut g, "mean".into(), vec![2], vec![0.5, 1.0]);
        let var = new_const(&mut g, "var".into(), vec![2], vec![3.0, 0.0]);
        let z = act(&mut g, "z", &[1, 2, 1, 1]);
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), Some(b)],
            outputs: vec![y],
        });
        g.nodes.push(Node {
            name: "bn".into(),
            op: Op::BatchNorm { epsilon: 1.0 },
            inputs: vec![Some(y), Some(s), Some(beta), Some(mean), Some(var)],
            outputs: vec![z],
        });
        g.output = z;
        run(&mut g);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.stats.bn_folded, 1);
        let n = &g.nodes[0];
        assert_eq!(n.outputs, vec![z]);
        // k = [2/sqrt(4), 1/sqrt(1)] = [1, 1]... use exact numbers: k0 = 1, k1 = 1.
        let wf = f32s(&g, n.input(1)).unwrap();
        assert_eq!(wf, &[1.0, 2.0, 3.0, 4.0]);
        let bf = f32s(&g, n.input(2)).unwrap();
        // b' = (b - mean) * k + beta = [(0.5-0.5)*1+1, (-0.5-1)*1+0]
        assert_eq!(bf, &[1.0, -1.5]);
    }

    #[test]
    fn batchnorm_scales_weights_per_output_channel() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 1, 1, 1]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![2, 1, 1, 1], vec![1.0, 1.0]);
        let y = act(&mut g, "y", &[1, 2, 1, 1]);
        let s = new_const(&mut g, "s".into(), vec![2], vec![3.0, 8.0]);
        let beta = new_const(&mut g, "beta".into(), vec![2], vec![0.0, 0.0]);
        let mean = new_const(&mut g, "mean".into(), vec![2], vec![1.0, 0.0]);
        let var = new_const(&mut g, "var".into(), vec![2], vec![9.0, 16.0]);
        let z = act(&mut g, "z", &[1, 2, 1, 1]);
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), None],
            outputs: vec![y],
        });
        g.nodes.push(Node {
            name: "bn".into(),
            op: Op::BatchNorm { epsilon: 0.0 },
            inputs: vec![Some(y), Some(s), Some(beta), Some(mean), Some(var)],
            outputs: vec![z],
        });
        g.output = z;
        run(&mut g);
        let n = &g.nodes[0];
        assert_eq!(f32s(&g, n.input(1)).unwrap(), &[1.0, 2.0]); // k = [3/3, 8/4]
        assert_eq!(f32s(&g, n.input(2)).unwrap(), &[-1.0, 0.0]); // (0 - mean) * k
    }

    #[test]
    fn batchnorm_with_a_second_reader_becomes_channel_affine() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 1, 1, 1]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![1, 1, 1, 1], vec![1.0]);
        let y = act(&mut g, "y", &[1, 1, 1, 1]);
        let s = new_const(&mut g, "s".into(), vec![1], vec![2.0]);
        let beta = new_const(&mut g, "beta".into(), vec![1], vec![1.0]);
        let mean = new_const(&mut g, "mean".into(), vec![1], vec![0.0]);
        let var = new_const(&mut g, "var".into(), vec![1], vec![1.0]);
        let z = act(&mut g, "z", &[1, 1, 1, 1]);
        let o = act(&mut g, "o", &[1, 1, 1, 1]);
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), None],
            outputs: vec![y],
        });
        g.nodes.push(Node {
            name: "bn".into(),
            op: Op::BatchNorm { epsilon: 0.0 },
            inputs: vec![Some(y), Some(s), Some(beta), Some(mean), Some(var)],
            outputs: vec![z],
        });
        g.nodes.push(Node {
            name: "add".into(),
            op: Op::Add { act: Act::None },
            inputs: vec![Some(z), Some(y)],
            outputs: vec![o],
        });
        let r = act(&mut g, "r", &[1, 1, 1, 1]);
        g.nodes.push(Node {
            name: "relu".into(),
            op: Op::Activation(Act::Relu),
            inputs: vec![Some(o)],
            outputs: vec![r],
        });
        g.output = g.nodes[3].outputs[0];
        run(&mut g);
        assert_eq!(g.stats.bn_folded, 0);
        assert_eq!(g.stats.bn_affine, 1);
        let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        // The add reads the conv output and the affine output: the affine's producer (bn) is
        // after the conv, so the residual cannot move into the conv; relu fuses into the add.
        assert_eq!(kinds, ["Conv2d", "ChannelAffine", "Add"]);
        assert_eq!(g.nodes[2].op, Op::Add { act: Act::Relu });
        assert_eq!(f32s(&g, g.nodes[1].input(1)).unwrap(), &[2.0]);
        assert_eq!(f32s(&g, g.nodes[1].input(2)).unwrap(), &[1.0]);
    }

    #[test]
    fn residual_add_and_relu_fuse_into_the_later_conv() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 1, 2, 2]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![1, 1, 1, 1], vec![1.0]);
        let a = act(&mut g, "a", &[1, 1, 2, 2]);
        let b = act(&mut g, "b", &[1, 1, 2, 2]);
        let s = act(&mut g, "s", &[1, 1, 2, 2]);
        let r = act(&mut g, "r", &[1, 1, 2, 2]);
        let conv = |name: &str, out| Node {
            name: name.into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), None],
            outputs: vec![out],
        };
        g.nodes.push(conv("c1", a));
        g.nodes.push(conv("c2", b));
        g.nodes.push(Node {
            name: "add".into(),
            op: Op::Add { act: Act::None },
            inputs: vec![Some(a), Some(b)],
            outputs: vec![s],
        });
        g.nodes.push(Node {
            name: "relu".into(),
            op: Op::Activation(Act::Relu),
            inputs: vec![Some(s)],
            outputs: vec![r],
        });
        g.output = r;
        run(&mut g);
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.nodes[1].name, "c2+add+relu");
        assert_eq!(g.nodes[1].input(3), Some(a));
        assert_eq!(g.nodes[1].op, Op::Conv2d { spec: conv_spec(), act: Act::Relu });
        assert_eq!(g.nodes[1].outputs, vec![r]);
        assert_eq!((g.stats.residual_fused, g.stats.act_fused), (1, 1));
    }

    /// The shortcut (other) is computed after the convolution: the convolution moves down.
    #[test]
    fn residual_computed_after_the_conv_still_fuses() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 1, 2, 2]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![1, 1, 1, 1], vec![1.0]);
        let c = act(&mut g, "c", &[1, 1, 2, 2]);
        let sc = act(&mut g, "sc", &[1, 1, 2, 2]);
        let s = act(&mut g, "s", &[1, 1, 2, 2]);
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), None],
            outputs: vec![c],
        });
        g.nodes.push(Node {
            name: "shortcut".into(),
            op: Op::Pad { before: vec![0; 4], value: 0.0 },
            inputs: vec![Some(x)],
            outputs: vec![sc],
        });
        g.nodes.push(Node {
            name: "add".into(),
            op: Op::Add { act: Act::None },
            inputs: vec![Some(c), Some(sc)],
            outputs: vec![s],
        });
        g.output = s;
        run(&mut g);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["shortcut", "conv+add"]);
        assert_eq!(g.nodes[1].input(3), Some(sc));
        assert_eq!(g.nodes[1].outputs, vec![s]);
    }

    /// NHWC input -> Transpose(0,3,1,2) -> conv -> Transpose(0,2,3,1) -> Transpose(0,3,1,2):
    /// the input becomes NCHW and both transpose pairs disappear.
    #[test]
    fn nhwc_input_and_cancelling_transposes_are_removed() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 5, 4, 3]);
        g.input = x;
        let xt = act(&mut g, "xt", &[1, 3, 5, 4]);
        let w = new_const(&mut g, "w".into(), vec![2, 3, 1, 1], vec![1.0; 6]);
        let c = act(&mut g, "c", &[1, 2, 5, 4]);
        let a = act(&mut g, "a", &[1, 5, 4, 2]);
        let b = act(&mut g, "b", &[1, 2, 5, 4]);
        let r = act(&mut g, "r", &[1, 2, 5, 4]);
        let tr = |name: &str, perm: Vec<usize>, i, o| Node {
            name: name.into(),
            op: Op::Transpose { perm },
            inputs: vec![Some(i)],
            outputs: vec![o],
        };
        g.nodes.push(tr("to_nchw", vec![0, 3, 1, 2], x, xt));
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(xt), Some(w), None],
            outputs: vec![c],
        });
        g.nodes.push(tr("to_nhwc", vec![0, 2, 3, 1], c, a));
        g.nodes.push(tr("back", vec![0, 3, 1, 2], a, b));
        g.nodes.push(Node {
            name: "relu".into(),
            op: Op::Activation(Act::Relu),
            inputs: vec![Some(b)],
            outputs: vec![r],
        });
        g.output = r;
        run(&mut g);
        assert_eq!(g.shape(g.input), [1, 3, 5, 4]);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["conv+relu"], "{:?}", g.nodes);
        assert_eq!(g.nodes[0].input(0), Some(x));
        // A transpose pair that does not cancel stays.
        let mut g2 = Graph::default();
        let x = act(&mut g2, "x", &[1, 2, 3, 4]);
        g2.input = x;
        let m = act(&mut g2, "m", &[1, 3, 4, 2]);
        let y = act(&mut g2, "y", &[1, 4, 2, 3]);
        g2.nodes.push(tr("t1", vec![0, 2, 3, 1], x, m));
        g2.nodes.push(tr("t2", vec![0, 2, 3, 1], m, y));
        g2.output = y;
        run(&mut g2);
        assert_eq!(g2.nodes.len(), 2);
        assert_eq!(g2.shape(g2.input), [1, 2, 3, 4], "an input read by other ops keeps its layout");
    }

    /// tf2onnx's raw pattern: NCHW convs, NHWC Add and Relu between transposes. The transposes
    /// sink below the Add and the Relu, meet their inverse and cancel; then the residual add
    /// and the Relu fuse into the second conv.
    #[test]
    fn transposes_sink_through_add_and_relu_and_cancel() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 2, 3, 3]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![2, 2, 1, 1], vec![1.0, 0.5, -0.5, 1.0]);
        let [a, b] = [act(&mut g, "a", &[1, 2, 3, 3]), act(&mut g, "b", &[1, 2, 3, 3])];
        let [ta, tb, s, r] = ["ta", "tb", "s", "r"].map(|n| act(&mut g, n, &[1, 3, 3, 2]));
        let back = act(&mut g, "back", &[1, 2, 3, 3]);
        let conv = |name: &str, out| Node {
            name: name.into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), None],
            outputs: vec![out],
        };
        let tr = |name: &str, perm: Vec<usize>, i, o| Node {
            name: name.into(),
            op: Op::Transpose { perm },
            inputs: vec![Some(i)],
            outputs: vec![o],
        };
        g.nodes.push(conv("c1", a));
        g.nodes.push(tr("ta", vec![0, 2, 3, 1], a, ta));
        g.nodes.push(conv("c2", b));
        g.nodes.push(tr("tb", vec![0, 2, 3, 1], b, tb));
        g.nodes.push(Node {
            name: "add".into(),
            op: Op::Add { act: Act::None },
            inputs: vec![Some(ta), Some(tb)],
            outputs: vec![s],
        });
        g.nodes.push(Node {
            name: "relu".into(),
            op: Op::Activation(Act::Relu),
            inputs: vec![Some(s)],
            outputs: vec![r],
        });
        g.nodes.push(tr("back", vec![0, 3, 1, 2], r, back));
        g.output = back;
        run(&mut g);
        let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(kinds, ["Conv2d", "Conv2d"], "{:?}", g.nodes);
        assert_eq!(g.nodes[1].op, Op::Conv2d { spec: conv_spec(), act: Act::Relu });
        assert_eq!(g.nodes[1].input(3), Some(a));
        assert_eq!(g.nodes[1].outputs, vec![back]);
    }

    #[test]
    fn output_tensors_are_not_fused_away() {
        let mut g = Graph::default();
        let x = act(&mut g, "x", &[1, 1, 2, 2]);
        g.input = x;
        let w = new_const(&mut g, "w".into(), vec![1, 1, 1, 1], vec![1.0]);
        let a = act(&mut g, "a", &[1, 1, 2, 2]);
        let r = act(&mut g, "r", &[1, 1, 2, 2]);
        g.nodes.push(Node {
            name: "c".into(),
            op: Op::Conv2d { spec: conv_spec(), act: Act::None },
            inputs: vec![Some(x), Some(w), None],
            outputs: vec![a],
        });
        g.nodes.push(Node {
            name: "relu".into(),
            op: Op::Activation(Act::Relu),
            inputs: vec![Some(a)],
            outputs: vec![r],
        });
        // The conv output is the graph output; the relu is dead and is removed, not fused.
        g.output = a;
        run(&mut g);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].op, Op::Conv2d { spec: conv_spec(), act: Act::None });
    }
}
