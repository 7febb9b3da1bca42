//! ResNet architectures from state-dict names: recognition and IR graph construction.
//!
//! Two families, with PyTorch's module names:
//! - CIFAR ResNets (He et al. 2015, akamaster/pytorch_resnet_cifar10): `conv1`, `bn1`,
//!   `layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}`, `linear`; 3x3 stem, no max pool, widths
//!   16/32/64, depth 6n+2; parameter-free "option A" shortcuts (`x[:, :, ::2, ::2]`, then
//!   `planes // 4` zero channels on each side).
//! - torchvision ResNets (v1.5: the stride sits on the 3x3 conv of a bottleneck): `conv1` (7x7
//!   stride 2), `bn1`, max pool, `layer{1..4}.{i}.{conv1,bn1,conv2,bn2[,conv3,bn3]}`,
//!   `layer{s}.0.downsample.{0,1}` (1x1 conv + BN), `fc`. The same names cover ResNeXt
//!   (grouped 3x3 in the bottleneck), Wide ResNets (wider bottleneck) and timm's `resnet*`;
//!   channel counts and groups are always read from the weights, so narrower or wider
//!   variants of a layout convert too. CIFAR ResNets may also have "option B" projection
//!   shortcuts (`layer{s}.0.shortcut.{0,1}`: 1x1 conv + BN).
//! - timm ResNet v2 (pre-activation, `resnetv2_50` ...): `stem.conv` (7x7 stride 2) + max pool,
//!   `stages.{s}.blocks.{i}.{norm1,conv1,norm2,conv2,norm3,conv3}` with BN -> ReLU before each
//!   conv, `stages.{s}.blocks.0.downsample.conv` (1x1 on the pre-activated input), `norm`
//!   (BN -> ReLU) and `head.fc` (1x1 conv with bias).
//!
//! The graph is the one `torch.onnx.export` produces for these modules (Conv, BatchNorm,
//! Relu, Add, Slice, Pad, MaxPool, GlobalAveragePool, Flatten, Gemm), so the passes and the
//! lowering treat it exactly like the ONNX route's.

use super::StateDict;
use crate::error::ConvertError;
use crate::ir::{Act, ConvSpec, Data, Graph, Node, Op, PoolSpec, Tensor, TensorId};
use crate::onnx::data_type;
use std::collections::{BTreeMap, HashSet};

/// CIFAR (3x3 stem, `linear`) or ImageNet (7x7 stem + max pool, `fc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchKind {
    Cifar,
    Imagenet,
}

/// Residual block type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Basic,
    Bottleneck,
}

/// Variant of the block layout (widths and groups are read from the weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// He et al.'s ResNet (v1.5 for torchvision bottlenecks).
    Plain,
    /// ResNeXt: grouped 3x3 convolution in the bottleneck.
    ResNeXt,
    /// Wide ResNet: the bottleneck's inner width is larger than `out / 4`.
    Wide,
    /// ResNet v2 (pre-activation, timm `resnetv2_*` names).
    PreAct,
}

/// An architecture: family, block type, blocks per stage and block variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arch {
    pub kind: ArchKind,
    pub block: Block,
    pub blocks: Vec<usize>,
    pub variant: Variant,
}

const TORCHVISION: &[(&str, Block, [usize; 4])] = &[
    ("resnet18", Block::Basic, [2, 2, 2, 2]),
    ("resnet34", Block::Basic, [3, 4, 6, 3]),
    ("resnet50", Block::Bottleneck, [3, 4, 6, 3]),
    ("resnet101", Block::Bottleneck, [3, 4, 23, 3]),
    ("resnet152", Block::Bottleneck, [3, 8, 36, 3]),
    ("resnet200", Block::Bottleneck, [3, 24, 36, 3]),
];
const CIFAR_DEPTHS: &[usize] = &[20, 32, 44, 56, 110];

/// Names `--arch` accepts.
pub const ARCH_NAMES: &str = "resnet20, resnet32, resnet44, resnet56, resnet110 (CIFAR), \
                              resnet18, resnet34, resnet50, resnet101, resnet152, resnet200, \
                              resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, \
                              wide_resnet101_2 (torchvision), resnetv2_50, resnetv2_101, resnetv2_152 (timm)";

/// Leading decimal digits of `s` as a number, and the rest.
fn split_depth(s: &str) -> Option<(usize, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Blocks per stage of a torchvision-layout depth (also ResNeXt, Wide, v2).
fn imagenet_blocks(depth: usize) -> Option<(Block, [usize; 4])> {
    TORCHVISION
        .iter()
        .find(|(n, _, _)| n.strip_prefix("resnet").and_then(|d| d.parse::<usize>().ok()) == Some(depth))
        .map(|(_, b, s)| (*b, *s))
}

/// Depth of a ResNet with `blocks` of type `block` (stem + per-block convs + head).
fn depth_of(block: Block, blocks: &[usize]) -> usize {
    let per = if block == Block::Bottleneck { 3 } else { 2 };
    per * blocks.iter().sum::<usize>() + 2
}

impl Arch {
    /// Parse an `--arch` name.
    pub fn parse(name: &str) -> Result<Arch, String> {
        let unknown = || format!("unknown architecture '{name}'; known: {ARCH_NAMES}");
        let lower = name.trim().to_ascii_lowercase().replace('-', "_");
        let bottleneck = |depth: usize, variant: Variant| match imagenet_blocks(depth) {
            Some((Block::Bottleneck, blocks)) => {
                Ok(Arch { kind: ArchKind::Imagenet, block: Block::Bottleneck, blocks: blocks.to_vec(), variant })
            }
            _ => Err(unknown()),
        };
        // resnext50, resnext50_32x4d, resnext101_64x4d: the groups come from the weights.
        if let Some(rest) = lower.strip_prefix("resnext") {
            let (depth, _) = split_depth(rest).ok_or_else(unknown)?;
            return bottleneck(depth, Variant::ResNeXt);
        }
        if let Some(rest) = lower.strip_prefix("wide_resnet").or_else(|| lower.strip_prefix("wideresnet")) {
            let (depth, rest) = split_depth(rest).ok_or_else(unknown)?;
            if !matches!(rest, "" | "_2") {
                return Err(unknown());
            }
            return bottleneck(depth, Variant::Wide);
        }
        if let Some(rest) = lower.strip_prefix("resnetv2") {
            let (depth, _) = split_depth(rest.trim_start_matches('_')).ok_or_else(unknown)?;
            return bottleneck(depth, Variant::PreAct);
        }
        let n = lower.replace('_', "");
        if let Some((_, block, blocks)) = TORCHVISION.iter().find(|(a, _, _)| *a == n) {
            return Ok(Arch {
                kind: ArchKind::Imagenet,
                block: *block,
                blocks: blocks.to_vec(),
                variant: Variant::Plain,
            });
        }
        let depth = n.strip_prefix("resnet").and_then(|d| d.parse::<usize>().ok());
        match depth {
            Some(d) if CIFAR_DEPTHS.contains(&d) => Ok(Arch {
                kind: ArchKind::Cifar,
                block: Block::Basic,
                blocks: vec![(d - 2) / 6; 3],
                variant: Variant::Plain,
            }),
            _ => Err(unknown()),
        }
    }

    /// The usual name (`resnet20`, `resnet50`, `resnext50`, `wide_resnet50_2`, `resnetv2_50`)
    /// or a description of a non-standard depth.
    pub fn name(&self) -> String {
        let standard = self.kind == ArchKind::Imagenet
            && TORCHVISION.iter().any(|(_, b, s)| *b == self.block && s.as_slice() == self.blocks.as_slice());
        let depth = depth_of(self.block, &self.blocks);
        match (self.kind, self.variant) {
            (ArchKind::Imagenet, Variant::Plain) if standard => format!("resnet{depth}"),
            (ArchKind::Imagenet, Variant::ResNeXt) if standard => format!("resnext{depth}"),
            (ArchKind::Imagenet, Variant::Wide) if standard => format!("wide_resnet{depth}_2"),
            (ArchKind::Imagenet, Variant::PreAct) if standard => format!("resnetv2_{depth}"),
            (ArchKind::Imagenet, v) => {
                format!("torchvision-style resnet ({v:?} {:?} blocks {:?})", self.block, self.blocks)
            }
            (ArchKind::Cifar, _) if self.block == Block::Basic && self.blocks.iter().all(|&b| b == self.blocks[0]) => {
                format!("resnet{}", 6 * self.blocks[0] + 2)
            }
            (ArchKind::Cifar, _) => format!("CIFAR resnet ({:?} blocks {:?})", self.block, self.blocks),
        }
    }

    /// Default input height and width.
    pub fn default_input(&self) -> [usize; 2] {
        match self.kind {
            ArchKind::Cifar => [32, 32],
            ArchKind::Imagenet => [224, 224],
        }
    }

    fn stem_width(&self) -> usize {
        match self.kind {
            ArchKind::Cifar => 16,
            ArchKind::Imagenet => 64,
        }
    }
}

/// What the state dict holds, for error messages.
fn found_summary(sd: &StateDict) -> String {
    let mut stages: BTreeMap<String, usize> = BTreeMap::new();
    let mut heads = Vec::new();
    for n in sd.names() {
        let mut parts = n.split('.');
        let (Some(a), Some(b)) = (parts.next(), parts.next()) else { continue };
        if let (true, Ok(i)) = (a.starts_with("layer"), b.parse::<usize>()) {
            let e = stages.entry(a.to_string()).or_default();
            *e = (*e).max(i + 1);
        } else if !a.starts_with("layer") && !heads.contains(&a) {
            heads.push(a);
        }
    }
    let shape = |n: &str| sd.get(n).map(|t| format!("{:?}", t.shape));
    let mut parts = vec![format!("{} tensors", sd.tensors.len())];
    if let Some(s) = shape("conv1.weight") {
        parts.push(format!("conv1.weight {s}"));
    }
    if !stages.is_empty() {
        let list: Vec<String> = stages.iter().map(|(k, v)| format!("{k}: {v} blocks")).collect();
        parts.push(list.join(", "));
    }
    if sd.get("layer1.0.conv3.weight").is_some() {
        parts.push("bottleneck blocks (layer1.0.conv3)".into());
    }
    let other: Vec<&str> = heads.into_iter().take(12).collect();
    if !other.is_empty() {
        parts.push(format!("top-level modules {}", other.join(", ")));
    }
    parts.join("; ")
}

/// Recognise the architecture from the tensor names and shapes.
pub fn infer_arch(sd: &StateDict) -> Result<Arch, String> {
    let fail = |why: &str| {
        format!(
            "cannot infer the architecture ({why}); the checkpoint has {}. Known architectures: {ARCH_NAMES} \
             (give one with --arch)",
            found_summary(sd)
        )
    };
    if sd.get("stem.conv.weight").is_some() && sd.names().any(|n| n.starts_with("stages.")) {
        return infer_preact(sd).map_err(|why| fail(&why));
    }
    let conv1 = sd.get("conv1.weight").ok_or_else(|| fail("no conv1.weight"))?;
    let k = conv1.shape.get(2).copied().unwrap_or(0);
    let kind = match (k, sd.get("linear.weight").is_some(), sd.get("fc.weight").is_some()) {
        (3, true, false) => ArchKind::Cifar,
        (7, false, true) => ArchKind::Imagenet,
        _ => return Err(fail("expected a 3x3 conv1 with `linear` (CIFAR) or a 7x7 conv1 with `fc` (torchvision)")),
    };
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for n in sd.names() {
        let mut parts = n.split('.');
        let (Some(a), Some(b)) = (parts.next(), parts.next()) else { continue };
        if let (Some(s), Ok(i)) = (a.strip_prefix("layer").and_then(|s| s.parse::<usize>().ok()), b.parse::<usize>()) {
            let e = counts.entry(s).or_default();
            *e = (*e).max(i + 1);
        }
    }
    let want = if kind == ArchKind::Cifar { 3 } else { 4 };
    if counts.keys().copied().collect::<Vec<_>>() != (1..=want).collect::<Vec<_>>() {
        return Err(fail(&format!("expected stages layer1..layer{want}")));
    }
    let block = if sd.get("layer1.0.conv3.weight").is_some() { Block::Bottleneck } else { Block::Basic };
    // ResNeXt / Wide from the first bottleneck's shapes: conv2 [mid, mid/groups, 3, 3],
    // conv3 [out, mid, 1, 1]; a plain bottleneck has mid = out / 4.
    let dims = |n: &str| sd.get(n).map(|t| t.shape.clone()).unwrap_or_default();
    let (c2, c3) = (dims("layer1.0.conv2.weight"), dims("layer1.0.conv3.weight"));
    let variant = match (block, c2.as_slice(), c3.as_slice()) {
        (Block::Bottleneck, [mid, per_group, ..], _) if *per_group > 0 && mid / per_group > 1 => Variant::ResNeXt,
        (Block::Bottleneck, [mid, ..], [out, ..]) if mid * 4 > *out => Variant::Wide,
        _ => Variant::Plain,
    };
    Ok(Arch { kind, block, blocks: counts.into_values().collect(), variant })
}

/// timm ResNet v2 (`stem.conv`, `stages.{s}.blocks.{i}`, `norm`, `head.fc`).
fn infer_preact(sd: &StateDict) -> Result<Arch, String> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for n in sd.names() {
        let parts: Vec<&str> = n.split('.').collect();
        if let ["stages", s, "blocks", i, ..] = parts.as_slice() {
            if let (Ok(s), Ok(i)) = (s.parse::<usize>(), i.parse::<usize>()) {
                let e = counts.entry(s).or_default();
                *e = (*e).max(i + 1);
            }
        }
    }
    if counts.keys().copied().collect::<Vec<_>>() != (0..4).collect::<Vec<_>>() {
        return Err("a timm ResNet v2 layout (stem.conv) without stages 0..3".into());
    }
    if sd.get("stages.0.blocks.0.conv3.weight").is_none() {
        return Err("timm ResNet v2 with basic blocks (only bottleneck blocks are supported)".into());
    }
    if sd.get("stages.0.blocks.0.norm1.running_var").is_none() {
        return Err(
            "timm ResNet v2 without BatchNorm (GroupNorm / weight-standardized BiT models are not supported)".into()
        );
    }
    Ok(Arch {
        kind: ArchKind::Imagenet,
        block: Block::Bottleneck,
        blocks: counts.into_values().collect(),
        variant: Variant::PreAct,
    })
}

/// Collects the tensors the graph uses and every problem with them.
struct Builder<'a> {
    sd: &'a StateDict,
    g: Graph,
    used: HashSet<&'a str>,
    problems: Vec<String>,
}

impl<'a> Builder<'a> {
    fn act(&mut self, name: String, shape: Vec<usize>) -> TensorId {
        self.g.add_tensor(Tensor { name, dtype: data_type::FLOAT, shape: Some(shape), value: None })
    }

    fn konst(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) -> TensorId {
        self.g.add_tensor(Tensor {
            name: name.into(),
            dtype: data_type::FLOAT,
            shape: Some(shape),
            value: Some(Data::F32(data)),
        })
    }

    /// The tensor `name`, which must have `want` dims (`None` = any). When it is missing or
    /// misshapen the problem is recorded and a stand-in of the wanted shape keeps the walk
    /// going, so that one error lists every problem.
    fn weight(&mut self, name: &str, want: &[Option<usize>], fill: usize) -> (TensorId, Vec<usize>) {
        let stand_in: Vec<usize> = want.iter().map(|d| d.unwrap_or(fill)).collect();
        let Some((key, t)) = self.sd.tensors.iter().find(|(n, _)| n == name) else {
            self.problems.push(format!("missing tensor '{name}' (shape {stand_in:?})"));
            let n = stand_in.iter().product();
            return (self.konst(name, stand_in.clone(), vec![0.0; n]), stand_in);
        };
        self.used.insert(key.as_str());
        let fits = t.shape.len() == want.len() && t.shape.iter().zip(want).all(|(&d, w)| w.is_none_or(|w| w == d));
        if !fits {
            let w: Vec<String> = want.iter().map(|d| d.map_or("*".into(), |d| d.to_string())).collect();
            self.problems.push(format!("tensor '{name}' has shape {:?}, expected [{}]", t.shape, w.join(", ")));
            let n = stand_in.iter().product();
            return (self.konst(name, stand_in.clone(), vec![0.0; n]), stand_in);
        }
        match t.to_f32() {
            Ok(v) => (self.konst(name, t.shape.clone(), v), t.shape.clone()),
            Err(e) => {
                self.problems.push(format!("tensor '{name}' {e}"));
                let n = stand_in.iter().product();
                (self.konst(name, stand_in.clone(), vec![0.0; n]), stand_in)
            }
        }
    }

    fn node(&mut self, name: &str, op: Op, inputs: Vec<Option<TensorId>>, out_shape: Vec<usize>) -> TensorId {
        let y = self.act(format!("{name}:out"), out_shape);
        self.g.nodes.push(Node { name: name.into(), op, inputs, outputs: vec![y] });
        y
    }

    /// `{p}.weight` (OIHW, no bias unless `{p}.bias` exists) applied to `x`.
    fn conv(&mut self, x: TensorId, p: &str, out: usize, k: usize, stride: usize, pad: usize) -> TensorId {
        let xs = self.g.shape(x).to_vec();
        let (w, ws) = self.weight(&format!("{p}.weight"), &[None, None, Some(k), Some(k)], out);
        let o = ws[0];
        let groups = if ws[1] > 0 && xs[1] % ws[1] == 0 { xs[1] / ws[1] } else { 0 };
        if groups == 0 || o % groups != 0 {
            self.problems
                .push(format!("tensor '{p}.weight' has shape {ws:?}: it does not fit {} input channels", xs[1]));
        }
        let bias = if self.sd.get(&format!("{p}.bias")).is_some() {
            Some(self.weight(&format!("{p}.bias"), &[Some(o)], o).0)
        } else {
            None
        };
        let dim = |d: usize| (d + 2 * pad).saturating_sub(k) / stride + 1;
        if xs[2] + 2 * pad < k || xs[3] + 2 * pad < k {
            self.problems.push(format!("{p}: a {}x{} input is too small for its {k}x{k} kernel", xs[2], xs[3]));
        }
        let spec = ConvSpec {
            kernel: [k, k],
            strides: [stride, stride],
            pads: [pad; 4],
            dilations: [1, 1],
            groups: groups.max(1),
        };
        let out_shape = vec![xs[0], o, dim(xs[2]), dim(xs[3])];
        self.node(p, Op::Conv2d { spec, act: Act::None }, vec![Some(x), Some(w), bias], out_shape)
    }

    /// Inference BatchNorm `{p}` (PyTorch's eps 1e-5).
    fn bn(&mut self, x: TensorId, p: &str) -> TensorId {
        let c = self.g.shape(x)[1];
        let mut ins = vec![Some(x)];
        for part in ["weight", "bias", "running_mean", "running_var"] {
            ins.push(Some(self.weight(&format!("{p}.{part}"), &[Some(c)], c).0));
        }
        if let Some((k, _)) = self.sd.tensors.iter().find(|(n, _)| *n == format!("{p}.num_batches_tracked")) {
            self.used.insert(k.as_str());
        }
        let shape = self.g.shape(x).to_vec();
        self.node(p, Op::BatchNorm { epsilon: 1e-5 }, ins, shape)
    }

    fn relu(&mut self, x: TensorId, name: &str) -> TensorId {
        let shape = self.g.shape(x).to_vec();
        self.node(name, Op::Activation(Act::Relu), vec![Some(x)], shape)
    }

    fn block(&mut self, x: TensorId, arch: &Arch, stage: usize, i: usize, width: usize) -> TensorId {
        let p = format!("layer{}.{i}", stage + 1);
        let stride = if stage > 0 && i == 0 { 2 } else { 1 };
        let in_c = self.g.shape(x)[1];
        let out_c;
        let main = match arch.block {
            Block::Basic => {
                out_c = width;
                let y = self.conv(x, &format!("{p}.conv1"), width, 3, stride, 1);
                let y = self.bn(y, &format!("{p}.bn1"));
                let y = self.relu(y, &format!("{p}.relu1"));
                let y = self.conv(y, &format!("{p}.conv2"), width, 3, 1, 1);
                self.bn(y, &format!("{p}.bn2"))
            }
            Block::Bottleneck => {
                out_c = width * 4;
                let y = self.conv(x, &format!("{p}.conv1"), width, 1, 1, 0);
                let y = self.bn(y, &format!("{p}.bn1"));
                let y = self.relu(y, &format!("{p}.relu1"));
                let mid = self.g.shape(y)[1];
                let y = self.conv(y, &format!("{p}.conv2"), mid, 3, stride, 1);
                let y = self.bn(y, &format!("{p}.bn2"));
                let y = self.relu(y, &format!("{p}.relu2"));
                let y = self.conv(y, &format!("{p}.conv3"), out_c, 1, 1, 0);
                self.bn(y, &format!("{p}.bn3"))
            }
        };
        let ms = self.g.shape(main).to_vec();
        let has_down = self.sd.get(&format!("{p}.downsample.0.weight")).is_some();
        let shortcut = if arch.kind == ArchKind::Imagenet && (has_down || stride != 1 || in_c != ms[1]) {
            let d = self.conv(x, &format!("{p}.downsample.0"), out_c, 1, stride, 0);
            self.bn(d, &format!("{p}.downsample.1"))
        } else if arch.kind == ArchKind::Cifar && self.sd.get(&format!("{p}.shortcut.0.weight")).is_some() {
            // Option B: 1x1 conv (stride) + BN projection.
            let d = self.conv(x, &format!("{p}.shortcut.0"), out_c, 1, stride, 0);
            self.bn(d, &format!("{p}.shortcut.1"))
        } else if arch.kind == ArchKind::Cifar && (stride != 1 || in_c != ms[1]) {
            if self.sd.names().any(|n| n.starts_with(&format!("{p}.shortcut."))) {
                self.problems.push(format!(
                    "{p}.shortcut has parameters but no 'shortcut.0.weight': only the option-A (parameter-free) \
                     and option-B (shortcut.0 1x1 conv + shortcut.1 BN) shortcuts are supported"
                ));
            }
            // x[:, :, ::2, ::2], then planes // 4 zero channels on each side.
            let xs = self.g.shape(x).to_vec();
            let sliced = vec![xs[0], xs[1], xs[2].div_ceil(stride), xs[3].div_ceil(stride)];
            let s = self.node(
                &format!("{p}.shortcut.slice"),
                Op::Slice { starts: vec![0; 4], steps: vec![1, 1, stride as i64, stride as i64] },
                vec![Some(x)],
                sliced.clone(),
            );
            let planes = ms[1];
            let padc = planes / 4;
            if xs[1] + 2 * padc != planes {
                self.problems.push(format!(
                    "{p}: option-A shortcut pads {} channels by {padc} on each side, which does not give the \
                     block's {planes}",
                    xs[1]
                ));
            }
            self.node(
                &format!("{p}.shortcut.pad"),
                Op::Pad { before: vec![0, padc, 0, 0], value: 0.0 },
                vec![Some(s)],
                vec![sliced[0], planes, sliced[2], sliced[3]],
            )
        } else {
            x
        };
        let ss = self.g.shape(shortcut).to_vec();
        if ss != ms {
            self.problems.push(format!("{p}: the residual branch gives {ms:?} but the shortcut {ss:?}"));
            return main;
        }
        let y = self.node(&format!("{p}.add"), Op::Add { act: Act::None }, vec![Some(main), Some(shortcut)], ms);
        self.relu(y, &format!("{p}.relu"))
    }

    /// BatchNorm `{p}` then ReLU (timm's BatchNormAct2d).
    fn bn_relu(&mut self, x: TensorId, p: &str) -> TensorId {
        let y = self.bn(x, p);
        self.relu(y, &format!("{p}.act"))
    }

    /// timm's PreActBottleneck: `pre = relu(norm1(x))`, shortcut `downsample.conv(pre)` or `x`,
    /// `conv3(relu(norm3(conv2(relu(norm2(conv1(pre)))))))` + shortcut; the stride sits on conv2.
    fn preact_block(&mut self, x: TensorId, stage: usize, i: usize) -> TensorId {
        let p = format!("stages.{stage}.blocks.{i}");
        let stride = if stage > 0 && i == 0 { 2 } else { 1 };
        let out_c = 256 << stage;
        let pre = self.bn_relu(x, &format!("{p}.norm1"));
        let y = self.conv(pre, &format!("{p}.conv1"), out_c / 4, 1, 1, 0);
        let y = self.bn_relu(y, &format!("{p}.norm2"));
        let mid = self.g.shape(y)[1];
        let y = self.conv(y, &format!("{p}.conv2"), mid, 3, stride, 1);
        let y = self.bn_relu(y, &format!("{p}.norm3"));
        let main = self.conv(y, &format!("{p}.conv3"), out_c, 1, 1, 0);
        let ms = self.g.shape(main).to_vec();
        let shortcut = if self.sd.get(&format!("{p}.downsample.conv.weight")).is_some() {
            self.conv(pre, &format!("{p}.downsample.conv"), ms[1], 1, stride, 0)
        } else {
            x
        };
        let ss = self.g.shape(shortcut).to_vec();
        if ss != ms {
            self.problems.push(format!("{p}: the residual branch gives {ms:?} but the shortcut {ss:?}"));
            return main;
        }
        self.node(&format!("{p}.add"), Op::Add { act: Act::None }, vec![Some(main), Some(shortcut)], ms)
    }

    /// 3x3 stride-2 max pool with padding 1 (torchvision's and timm's stems).
    fn stem_pool(&mut self, y: TensorId) -> TensorId {
        let s = self.g.shape(y).to_vec();
        let spec =
            PoolSpec { kernel: [3, 3], strides: [2, 2], pads: [1; 4], dilations: [1, 1], count_include_pad: false };
        let out = vec![s[0], s[1], (s[2] + 2 - 3) / 2 + 1, (s[3] + 2 - 3) / 2 + 1];
        self.node("maxpool", Op::MaxPool(spec), vec![Some(y)], out)
    }
}

/// Build the IR graph of `arch` from the state dict; input `[batch, 3, hw[0], hw[1]]` NCHW.
/// Missing, misshapen and unused tensors are all reported in one error.
pub fn build_graph(sd: &StateDict, arch: &Arch, batch: usize, hw: [usize; 2]) -> Result<Graph, ConvertError> {
    if batch == 0 || hw[0] == 0 || hw[1] == 0 || batch * hw[0] * hw[1] > 1 << 28 {
        return Err(ConvertError::Other(format!("unsupported input size {batch}x3x{}x{}", hw[0], hw[1])));
    }
    let mut b = Builder {
        sd,
        g: Graph { producer: sd.format.clone(), ..Graph::default() },
        used: HashSet::new(),
        problems: Vec::new(),
    };
    let x = b.act("input".into(), vec![batch, 3, hw[0], hw[1]]);
    b.g.input = x;
    let stem = arch.stem_width();
    if arch.variant == Variant::PreAct {
        let y = b.conv(x, "stem.conv", stem, 7, 2, 3);
        let mut y = b.stem_pool(y);
        for (stage, &n) in arch.blocks.iter().enumerate() {
            for i in 0..n {
                y = b.preact_block(y, stage, i);
            }
        }
        let y = b.bn_relu(y, "norm");
        let s = b.g.shape(y).to_vec();
        let pooled = b.node("head.global_pool", Op::GlobalAvgPool, vec![Some(y)], vec![s[0], s[1], 1, 1]);
        let classes = sd.get("head.fc.weight").and_then(|t| t.shape.first().copied()).unwrap_or(1000);
        let logits = b.conv(pooled, "head.fc", classes, 1, 1, 0);
        if sd.get("head.fc.bias").is_none() {
            b.problems.push(format!("missing tensor 'head.fc.bias' (shape [{classes}])"));
        }
        let classes = b.g.shape(logits)[1];
        b.g.output = b.node("head.flatten", Op::Copy, vec![Some(logits)], vec![s[0], classes]);
    } else {
        let mut y = match arch.kind {
            ArchKind::Cifar => {
                let y = b.conv(x, "conv1", stem, 3, 1, 1);
                let y = b.bn(y, "bn1");
                b.relu(y, "relu")
            }
            ArchKind::Imagenet => {
                let y = b.conv(x, "conv1", stem, 7, 2, 3);
                let y = b.bn(y, "bn1");
                let y = b.relu(y, "relu");
                b.stem_pool(y)
            }
        };
        for (stage, &n) in arch.blocks.iter().enumerate() {
            let width = stem << stage;
            for i in 0..n {
                y = b.block(y, arch, stage, i, width);
            }
        }
        let s = b.g.shape(y).to_vec();
        let pooled = b.node("avgpool", Op::GlobalAvgPool, vec![Some(y)], vec![s[0], s[1], 1, 1]);
        let flat = b.node("flatten", Op::Copy, vec![Some(pooled)], vec![s[0], s[1]]);
        let head = if arch.kind == ArchKind::Cifar { "linear" } else { "fc" };
        let classes = sd.get(&format!("{head}.weight")).and_then(|t| t.shape.first().copied()).unwrap_or(10);
        let (w, _) = b.weight(&format!("{head}.weight"), &[Some(classes), Some(s[1])], classes);
        let (bias, _) = b.weight(&format!("{head}.bias"), &[Some(classes)], classes);
        let out =
            b.node(head, Op::Linear { act: Act::None }, vec![Some(flat), Some(w), Some(bias)], vec![s[0], classes]);
        b.g.output = out;
    }

    let unused: Vec<String> = sd
        .tensors
        .iter()
        .filter(|(n, _)| !b.used.contains(n.as_str()) && !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| format!("'{n}' {:?}", t.shape))
        .collect();
    if !unused.is_empty() {
        let more = if unused.len() > 20 { format!(" and {} more", unused.len() - 20) } else { String::new() };
        b.problems.push(format!(
            "{} tensor(s) that {} does not use: {}{more}",
            unused.len(),
            arch.name(),
            unused[..unused.len().min(20)].join(", ")
        ));
    }
    if !b.problems.is_empty() {
        let n = b.problems.len();
        let list: String = b.problems.iter().take(40).map(|p| format!("\n  - {p}")).collect();
        let more = if n > 40 { format!("\n  ... and {} more", n - 40) } else { String::new() };
        return Err(ConvertError::InvalidModel(format!(
            "the checkpoint does not fit {} ({n} problem(s)):{list}{more}",
            arch.name()
        )));
    }
    Ok(b.g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_parse_and_round_trip() {
        for (name, canonical, variant, blocks) in [
            ("resnet200", "resnet200", Variant::Plain, vec![3, 24, 36, 3]),
            ("ResNeXt50_32x4d", "resnext50", Variant::ResNeXt, vec![3, 4, 6, 3]),
            ("resnext101_64x4d", "resnext101", Variant::ResNeXt, vec![3, 4, 23, 3]),
            ("wide_resnet50_2", "wide_resnet50_2", Variant::Wide, vec![3, 4, 6, 3]),
            ("wide-resnet101-2", "wide_resnet101_2", Variant::Wide, vec![3, 4, 23, 3]),
            ("resnetv2_50", "resnetv2_50", Variant::PreAct, vec![3, 4, 6, 3]),
            ("resnetv2-152", "resnetv2_152", Variant::PreAct, vec![3, 8, 36, 3]),
            ("ResNet-20", "resnet20", Variant::Plain, vec![3, 3, 3]),
        ] {
            let a = Arch::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((a.variant, &a.blocks), (variant, &blocks), "{name}");
            assert_eq!(a.name(), canonical, "{name}");
            assert_eq!(Arch::parse(&a.name()).unwrap(), a, "{name}");
        }
        for bad in ["resnext18", "wide_resnet50_4", "resnetv2_34", "resnext", "vgg16"] {
            let e = Arch::parse(bad).unwrap_err();
            assert!(e.contains("resnext50_32x4d") && e.contains("resnetv2_50"), "{bad}: {e}");
        }
    }
}
