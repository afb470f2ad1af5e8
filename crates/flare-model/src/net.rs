//! The U-Net's parameters in the engine's layout, built from a [`UNetConfig`].
//!
//! Layers are plain structs; [`UNet::slots`] and [`UNet::slots_mut`] list every parameter
//! buffer in exactly the order of [`UNetConfig::param_specs`], which is how files, optimisers
//! and gradient containers pair values with names without a second source of truth.

use flare_engine::{Conv3dSpec, Conv3dWeight};

use crate::{
    ModelError, Result, UNetConfig,
    config::{ParamKind, ParamSpec},
    error::LayerContext,
};

/// A convolution: weights (`[kd][kh][kw][ci][co]`), bias, kernel/stride/padding.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Weights in the engine's layout.
    pub weight: Conv3dWeight,
    /// One bias per output channel.
    pub bias: Vec<f32>,
    /// Kernel, stride, padding.
    pub spec: Conv3dSpec,
}

/// Affine instance-norm parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceNorm {
    /// Scale per channel (PyTorch's `weight`).
    pub gamma: Vec<f32>,
    /// Shift per channel (PyTorch's `bias`).
    pub beta: Vec<f32>,
}

/// One convolution + instance norm + activation unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// The convolution.
    pub conv: Conv,
    /// The normalisation after it.
    pub norm: InstanceNorm,
}

/// A transposed convolution (kernel = stride).
#[derive(Clone, Debug, PartialEq)]
pub struct Up {
    /// Weights in the engine's layout (`[kd][kh][kw][ci][co]`).
    pub weight: Conv3dWeight,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

/// One decoder level: upsampling, then a block on `[upsampled, skip]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoder {
    /// The transposed convolution from the level below.
    pub up: Up,
    /// The block's units.
    pub units: Vec<Unit>,
}

/// A U-Net: its configuration and parameters (see [`crate::config`] for the structure).
#[derive(Clone, Debug, PartialEq)]
pub struct UNet {
    config: UNetConfig,
    /// Encoder blocks, level 0 first.
    pub encoder: Vec<Vec<Unit>>,
    /// Decoder levels, indexed by the level they produce (0 = full resolution).
    pub decoder: Vec<Decoder>,
    /// The final 1x1x1 convolution to the classes.
    pub head: Conv,
    /// Deep-supervision heads: (decoder level, 1x1x1 convolution).
    pub ds: Vec<(usize, Conv)>,
}

fn conv(name: &str, k: [usize; 3], stride: [usize; 3], ci: usize, co: usize) -> Result<Conv> {
    Ok(Conv {
        weight: Conv3dWeight::zeros(k, ci, co).layer(name)?,
        bias: vec![0.0; co],
        spec: Conv3dSpec::new(k, stride, k.map(|v| v / 2)).layer(name)?,
    })
}

fn unit(name: &str, k: [usize; 3], stride: [usize; 3], ci: usize, co: usize) -> Result<Unit> {
    Ok(Unit {
        conv: conv(name, k, stride, ci, co)?,
        norm: InstanceNorm {
            gamma: vec![1.0; co],
            beta: vec![0.0; co],
        },
    })
}

impl UNet {
    /// A network with zero convolution weights and biases and identity norms (every
    /// parameter then gets overwritten by [`UNet::init`] or a loader).
    pub fn zeros(config: &UNetConfig) -> Result<UNet> {
        config.validate()?;
        // Configurations come from files (model cards, training configs): check the memory
        // before allocating. `validate` has made sure the count does not overflow.
        let bytes = config.param_bytes().unwrap_or(u64::MAX);
        flare_volume::memory::ensure_fits(bytes).map_err(|source| ModelError::TooLarge {
            what: format!(
                "a network of widths {:?} ({bytes} bytes of parameters)",
                config.widths
            ),
            source,
        })?;
        let c = config;
        let mut encoder = Vec::new();
        for l in 0..c.levels() {
            let mut units = Vec::new();
            for i in 0..c.convs_per_block {
                let stride = if i == 0 { c.strides[l] } else { [1; 3] };
                let name = format!("encoder.{l}.conv{}", i + 1);
                units.push(unit(
                    &name,
                    c.kernels[l],
                    stride,
                    c.enc_in(l, i),
                    c.widths[l],
                )?);
            }
            encoder.push(units);
        }
        let mut decoder = Vec::new();
        for l in 0..c.levels() - 1 {
            let k = c.strides[l + 1];
            let up = Up {
                weight: Conv3dWeight::zeros(k, c.widths[l + 1], c.widths[l])
                    .layer(&format!("decoder.{l}.up"))?,
                bias: vec![0.0; c.widths[l]],
            };
            let mut units = Vec::new();
            for i in 0..c.convs_per_block {
                let name = format!("decoder.{l}.conv{}", i + 1);
                units.push(unit(
                    &name,
                    c.kernels[l],
                    [1; 3],
                    c.dec_in(l, i),
                    c.widths[l],
                )?);
            }
            decoder.push(Decoder { up, units });
        }
        let head = conv("head", [1; 3], [1; 3], c.widths[0], c.num_classes)?;
        let mut ds = Vec::new();
        for l in c.ds_levels() {
            ds.push((
                l,
                conv(
                    &format!("ds.{l}"),
                    [1; 3],
                    [1; 3],
                    c.widths[l],
                    c.num_classes,
                )?,
            ));
        }
        Ok(UNet {
            config: c.clone(),
            encoder,
            decoder,
            head,
            ds,
        })
    }

    /// A freshly initialised network: convolution weights He-uniform for LeakyReLU
    /// (`U(-b, b)`, `b = sqrt(6 / ((1 + a^2) fan_in))`, as nnU-Net's Kaiming init with
    /// `a = 0.01`), biases 0, norms identity; reproducible from `seed`.
    pub fn init(config: &UNetConfig, seed: u64) -> Result<UNet> {
        let mut net = UNet::zeros(config)?;
        let mut rng = SplitMix(seed);
        let slope = config.slope() as f64;
        let specs = config.specs_of_valid();
        for (spec, slot) in specs.iter().zip(net.slots_mut()) {
            if spec.kind == ParamKind::Vector {
                continue;
            }
            // fan_in = in-channels x taps; ConvTranspose3d's fan_in (as PyTorch computes it from
            // the weight's dim 1) is its output channels x taps.
            let fan_in: usize = spec.shape[1..].iter().product();
            let b = (6.0 / ((1.0 + slope * slope) * fan_in as f64)).sqrt();
            for v in slot.iter_mut() {
                *v = ((rng.next_f64() * 2.0 - 1.0) * b) as f32;
            }
        }
        Ok(net)
    }

    /// The element-wise mean of the parameters of networks of one architecture: checkpoint
    /// averaging (as stochastic weight averaging does along one run), which lands nearer the
    /// middle of the flat region late training wanders in than any single checkpoint. Only
    /// meaningful for checkpoints of one run (or fine-tunes of one network): independently
    /// trained networks do not average. Sums in f64 so the order of the inputs does not matter
    /// beyond the last bit.
    pub fn average(nets: &[&UNet]) -> Result<UNet> {
        let first = nets
            .first()
            .ok_or_else(|| ModelError::Input("no network to average".into()))?;
        if nets.iter().any(|n| n.config() != first.config()) {
            return Err(ModelError::Input(
                "the networks to average differ in architecture".into(),
            ));
        }
        let mut out = UNet::zeros(first.config())?;
        let inputs: Vec<Vec<&[f32]>> = nets.iter().map(|n| n.slots()).collect();
        let scale = 1.0 / nets.len() as f64;
        for (index, slot) in out.slots_mut().into_iter().enumerate() {
            for (e, o) in slot.iter_mut().enumerate() {
                let sum: f64 = inputs.iter().map(|s| f64::from(s[index][e])).sum();
                *o = (sum * scale) as f32;
            }
        }
        Ok(out)
    }

    /// The configuration.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Every parameter buffer in the engine's layout, in [`UNetConfig::param_specs`] order.
    pub fn slots(&self) -> Vec<&[f32]> {
        let mut v: Vec<&[f32]> = Vec::new();
        for units in &self.encoder {
            for u in units {
                v.extend([
                    u.conv.weight.data(),
                    &u.conv.bias,
                    &u.norm.gamma,
                    &u.norm.beta,
                ]);
            }
        }
        for d in &self.decoder {
            v.extend([d.up.weight.data(), &d.up.bias[..]]);
            for u in &d.units {
                v.extend([
                    u.conv.weight.data(),
                    &u.conv.bias,
                    &u.norm.gamma,
                    &u.norm.beta,
                ]);
            }
        }
        v.extend([self.head.weight.data(), &self.head.bias[..]]);
        for (_, h) in &self.ds {
            v.extend([h.weight.data(), &h.bias[..]]);
        }
        v
    }

    /// Every parameter buffer, mutable, in [`UNetConfig::param_specs`] order.
    pub fn slots_mut(&mut self) -> Vec<&mut [f32]> {
        let mut v: Vec<&mut [f32]> = Vec::new();
        for units in &mut self.encoder {
            for u in units {
                v.push(u.conv.weight.data_mut());
                v.push(&mut u.conv.bias);
                v.push(&mut u.norm.gamma);
                v.push(&mut u.norm.beta);
            }
        }
        for d in &mut self.decoder {
            v.push(d.up.weight.data_mut());
            v.push(&mut d.up.bias);
            for u in &mut d.units {
                v.push(u.conv.weight.data_mut());
                v.push(&mut u.conv.bias);
                v.push(&mut u.norm.gamma);
                v.push(&mut u.norm.beta);
            }
        }
        v.push(self.head.weight.data_mut());
        v.push(&mut self.head.bias);
        for (_, h) in &mut self.ds {
            v.push(h.weight.data_mut());
            v.push(&mut h.bias);
        }
        v
    }

    /// Every parameter as `(name, shape, values)` in PyTorch's layout, ready to save.
    pub fn to_torch(&self) -> Vec<(ParamSpec, Vec<f32>)> {
        let specs = self.config.specs_of_valid();
        specs
            .into_iter()
            .zip(self.slots())
            .map(|(spec, slot)| {
                let vals = to_torch_layout(&spec, slot);
                (spec, vals)
            })
            .collect()
    }

    /// Overwrites parameter `index` (in [`UNetConfig::param_specs`] order) from values in
    /// PyTorch's layout.
    pub(crate) fn set_from_torch(&mut self, index: usize, torch: &[f32]) -> Result<()> {
        let specs = self.config.specs_of_valid();
        let spec = specs
            .get(index)
            .ok_or_else(|| ModelError::Input(format!("no parameter number {index}")))?;
        let mut slots = self.slots_mut();
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| ModelError::Input(format!("no parameter number {index}")))?;
        if slot.len() != torch.len() {
            return Err(ModelError::Input(format!(
                "parameter `{}` needs {} values, got {}",
                spec.name,
                slot.len(),
                torch.len()
            )));
        }
        from_torch_layout(spec, torch, slot);
        Ok(())
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.slots().iter().map(|s| s.len()).sum()
    }
}

/// `[co, ci, taps]` (or `[ci, co, taps]` for transposed) -> `[taps, ci, co]`.
fn from_torch_layout(spec: &ParamSpec, torch: &[f32], dst: &mut [f32]) {
    let taps: usize = spec.shape.iter().skip(2).product();
    match spec.kind {
        ParamKind::Vector => dst.copy_from_slice(torch),
        ParamKind::ConvWeight => {
            let (co, ci) = (spec.shape[0], spec.shape[1]);
            for o in 0..co {
                for i in 0..ci {
                    for t in 0..taps {
                        dst[(t * ci + i) * co + o] = torch[(o * ci + i) * taps + t];
                    }
                }
            }
        }
        ParamKind::ConvTransposeWeight => {
            let (ci, co) = (spec.shape[0], spec.shape[1]);
            for i in 0..ci {
                for o in 0..co {
                    for t in 0..taps {
                        dst[(t * ci + i) * co + o] = torch[(i * co + o) * taps + t];
                    }
                }
            }
        }
    }
}

/// Inverse of [`from_torch_layout`].
pub(crate) fn to_torch_layout(spec: &ParamSpec, src: &[f32]) -> Vec<f32> {
    let taps: usize = spec.shape.iter().skip(2).product();
    let mut out = vec![0.0; src.len()];
    match spec.kind {
        ParamKind::Vector => out.copy_from_slice(src),
        ParamKind::ConvWeight => {
            let (co, ci) = (spec.shape[0], spec.shape[1]);
            for o in 0..co {
                for i in 0..ci {
                    for t in 0..taps {
                        out[(o * ci + i) * taps + t] = src[(t * ci + i) * co + o];
                    }
                }
            }
        }
        ParamKind::ConvTransposeWeight => {
            let (ci, co) = (spec.shape[0], spec.shape[1]);
            for i in 0..ci {
                for o in 0..co {
                    for t in 0..taps {
                        out[(i * co + o) * taps + t] = src[(t * ci + i) * co + o];
                    }
                }
            }
        }
    }
    out
}

/// SplitMix64: a tiny, well-mixed generator, enough for reproducible initialisation.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_is_the_element_wise_mean() {
        let c = UNetConfig::standard(1, 5, &[4, 8]);
        let nets: Vec<UNet> = (1..=3).map(|s| UNet::init(&c, s).unwrap()).collect();
        let refs: Vec<&UNet> = nets.iter().collect();
        let avg = UNet::average(&refs).unwrap();
        let mut checked = 0;
        for (i, slot) in avg.slots().iter().enumerate() {
            for (e, &v) in slot.iter().enumerate() {
                let want = nets.iter().map(|n| n.slots()[i][e]).sum::<f32>() / 3.0;
                assert!(
                    (v - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "slot {i}[{e}]"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, c.num_params().unwrap());
        // Weights differ between seeds, so the mean is none of them.
        assert!(avg.slots()[0] != nets[0].slots()[0]);
        let other = UNet::init(&UNetConfig::standard(1, 5, &[4, 4]), 1).unwrap();
        assert!(UNet::average(&[&nets[0], &other]).is_err());
        assert!(UNet::average(&[]).is_err());
    }

    #[test]
    fn slots_follow_the_specs() {
        let mut c = UNetConfig::standard(1, 5, &[4, 8, 16]);
        c.deep_supervision = true;
        c.kernels[2] = [1, 3, 3];
        let net = UNet::init(&c, 7).unwrap();
        let specs = c.param_specs().unwrap();
        let slots = net.slots();
        assert_eq!(specs.len(), slots.len());
        for (s, v) in specs.iter().zip(&slots) {
            assert_eq!(s.shape.iter().product::<usize>(), v.len(), "{}", s.name);
        }
        assert_eq!(net.num_params(), c.num_params().unwrap());
    }

    #[test]
    fn torch_layout_round_trips_and_matches_the_engine() {
        let c = UNetConfig::standard(1, 5, &[4, 8]);
        let net = UNet::init(&c, 3).unwrap();
        let mut back = UNet::zeros(&c).unwrap();
        for (i, (spec, vals)) in net.to_torch().iter().enumerate() {
            back.set_from_torch(i, vals).unwrap();
            if spec.name == "encoder.1.conv1.weight" {
                // The engine's own converter agrees with ours.
                let w = Conv3dWeight::from_torch([3; 3], 4, 8, vals).unwrap();
                assert_eq!(w, net.encoder[1][0].conv.weight);
            }
            if spec.name == "decoder.0.up.weight" {
                let w = Conv3dWeight::from_torch_transposed([2; 3], 8, 4, vals).unwrap();
                assert_eq!(w, net.decoder[0].up.weight);
            }
        }
        assert_eq!(back, net);
    }
}
