//! The U-Net architecture as data: levels, widths, kernels, strides, heads.
//!
//! A [`UNetConfig`] is what the model card stores; everything else (parameter names and shapes,
//! layer order, input size rules) is derived from it here, in one place, so that the Rust
//! network, the file validator and the PyTorch scripts cannot disagree.
//!
//! # The network
//! Encoder level `l` is a block of `convs_per_block` units, each a convolution (kernel
//! `kernels[l]`, padding `k / 2`, bias) followed by InstanceNorm (affine) and LeakyReLU. The
//! first unit of level `l > 0` has stride `strides[l]` (strided-conv downsampling). Decoder
//! level `l` (from `levels - 2` down to 0) upsamples the level below with a transposed
//! convolution (kernel = stride = `strides[l + 1]`), concatenates `[upsampled, skip]` along
//! channels (upsampled first), and runs a block of level `l`'s kernel. A 1x1x1 convolution
//! (`head`) maps level 0 to the classes; with deep supervision, `ds.<l>` heads do the same at
//! decoder levels `1..levels - 1`.
//!
//! # Parameter names (PyTorch `state_dict` keys)
//! `encoder.<l>.conv<i>.{weight,bias}`, `encoder.<l>.norm<i>.{weight,bias}` (`i` from 1),
//! `decoder.<l>.up.{weight,bias}`, `decoder.<l>.conv<i>...`, `decoder.<l>.norm<i>...`,
//! `head.{weight,bias}`, `ds.<l>.{weight,bias}`. Shapes are PyTorch's: `Conv3d.weight` is
//! `[co, ci, kd, kh, kw]`, `ConvTranspose3d.weight` is `[ci, co, kd, kh, kw]`.

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// The normalisation after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum Norm {
    /// `InstanceNorm3d(affine=True)`, statistics per sample and channel.
    InstanceAffine {
        /// Added to the variance.
        eps: f32,
    },
}

/// The activation after each normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum Activation {
    /// `LeakyReLU(negative_slope)`; must be positive (backward reads the output's sign).
    LeakyRelu {
        /// The negative slope.
        negative_slope: f32,
    },
}

/// The architecture of a U-Net (see the module doc for the network it describes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Input channels (1 for CT).
    pub in_channels: usize,
    /// Output classes, background included (5 for FLARE).
    pub num_classes: usize,
    /// Channels per level, shallowest first (e.g. `[16, 32, 64, 128]`); its length is the
    /// number of levels.
    pub widths: Vec<usize>,
    /// Convolution kernel `[kd, kh, kw]` per level (3x3x3, or anisotropic such as `[1, 3, 3]`).
    pub kernels: Vec<[usize; 3]>,
    /// Downsampling stride `[sd, sh, sw]` into each level; level 0's must be `[1, 1, 1]`.
    pub strides: Vec<[usize; 3]>,
    /// Convolution units per block.
    pub convs_per_block: usize,
    /// Whether the lower decoder levels have their own 1x1x1 heads.
    pub deep_supervision: bool,
    /// The normalisation.
    pub norm: Norm,
    /// The activation.
    pub activation: Activation,
}

/// What a parameter is, which fixes its layout conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// `Conv3d.weight`, `[co, ci, kd, kh, kw]`.
    ConvWeight,
    /// `ConvTranspose3d.weight`, `[ci, co, kd, kh, kw]`.
    ConvTransposeWeight,
    /// A per-channel vector (bias, norm scale or shift).
    Vector,
}

/// One parameter of the architecture: its name, its shape in PyTorch's layout and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// PyTorch `state_dict` key.
    pub name: String,
    /// Shape in PyTorch's layout.
    pub shape: Vec<usize>,
    /// Kind (layout).
    pub kind: ParamKind,
}

impl UNetConfig {
    /// A 3x3x3 U-Net with stride-2 downsampling, two units per block, InstanceNorm (eps 1e-5)
    /// and LeakyReLU(0.01), as nnU-Net and the PyTorch reference use.
    pub fn standard(in_channels: usize, num_classes: usize, widths: &[usize]) -> UNetConfig {
        let levels = widths.len();
        UNetConfig {
            in_channels,
            num_classes,
            widths: widths.to_vec(),
            kernels: vec![[3; 3]; levels],
            strides: (0..levels)
                .map(|l| if l == 0 { [1; 3] } else { [2; 3] })
                .collect(),
            convs_per_block: 2,
            deep_supervision: false,
            norm: Norm::InstanceAffine { eps: 1e-5 },
            activation: Activation::LeakyRelu {
                negative_slope: 0.01,
            },
        }
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.widths.len()
    }

    /// Checks that the description is consistent.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        let l = self.levels();
        if l == 0 {
            return bad("widths is empty: a U-Net needs at least one level".into());
        }
        if self.kernels.len() != l || self.strides.len() != l {
            return bad(format!(
                "{l} widths but {} kernels and {} strides (one per level)",
                self.kernels.len(),
                self.strides.len()
            ));
        }
        if self.in_channels == 0 || self.num_classes == 0 || self.convs_per_block == 0 {
            return bad(format!(
                "in_channels {}, num_classes {}, convs_per_block {} must all be at least 1",
                self.in_channels, self.num_classes, self.convs_per_block
            ));
        }
        if let Some(i) = self.widths.iter().position(|&w| w == 0) {
            return bad(format!("widths[{i}] is 0"));
        }
        for (i, k) in self.kernels.iter().enumerate() {
            if k.iter().any(|&v| v == 0 || v % 2 == 0) {
                return bad(format!(
                    "kernels[{i}] = {k:?}: every extent must be odd (same padding k / 2)"
                ));
            }
        }
        if self.strides[0] != [1; 3] {
            return bad(format!(
                "strides[0] = {:?} must be [1, 1, 1]",
                self.strides[0]
            ));
        }
        for (i, s) in self.strides.iter().enumerate().skip(1) {
            if s.contains(&0) {
                return bad(format!("strides[{i}] = {s:?} has a zero"));
            }
        }
        if self.deep_supervision && l < 3 {
            return bad(format!(
                "deep supervision needs at least 3 levels (heads on decoder levels 1..{}), got {l}",
                l.saturating_sub(1)
            ));
        }
        if self.param_bytes().is_none() {
            return bad(format!(
                "widths {:?}, kernels {:?}, strides {:?} and {} convs per block give more \
                 parameters than any file can hold",
                self.widths, self.kernels, self.strides, self.convs_per_block
            ));
        }
        match self.norm {
            Norm::InstanceAffine { eps } if !(eps > 0.0 && eps.is_finite()) => {
                return bad(format!("norm eps {eps} must be positive"));
            }
            _ => {}
        }
        match self.activation {
            Activation::LeakyRelu { negative_slope }
                if negative_slope.is_nan() || negative_slope <= 0.0 =>
            {
                return bad(format!(
                    "LeakyReLU slope {negative_slope} must be positive (backward uses the output)"
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The normalisation epsilon.
    pub fn norm_eps(&self) -> f32 {
        match self.norm {
            Norm::InstanceAffine { eps } => eps,
        }
    }

    /// The LeakyReLU slope.
    pub fn slope(&self) -> f32 {
        match self.activation {
            Activation::LeakyRelu { negative_slope } => negative_slope,
        }
    }

    /// The total downsampling factor per axis (`[d, h, w]`): input sizes must be multiples.
    pub fn size_divisor(&self) -> [usize; 3] {
        let mut f = [1usize; 3];
        for s in &self.strides {
            for a in 0..3 {
                f[a] = f[a].saturating_mul(s[a]);
            }
        }
        f
    }

    /// Checks that an input spatial size `[d, h, w]` passes through every level and back.
    pub fn check_input(&self, spatial: [usize; 3], channels: usize) -> Result<()> {
        let f = self.size_divisor();
        if channels != self.in_channels {
            return Err(ModelError::Input(format!(
                "input has {channels} channels, the network expects {}",
                self.in_channels
            )));
        }
        if (0..3).any(|a| spatial[a] == 0 || !spatial[a].is_multiple_of(f[a])) {
            return Err(ModelError::Input(format!(
                "input size {spatial:?} (d, h, w) must be a positive multiple of {f:?}, the \
                 product of the strides"
            )));
        }
        Ok(())
    }

    /// Input channels of unit `i` of encoder level `l`.
    pub(crate) fn enc_in(&self, l: usize, i: usize) -> usize {
        match (l, i) {
            (0, 0) => self.in_channels,
            (_, 0) => self.widths[l - 1],
            _ => self.widths[l],
        }
    }

    /// Input channels of unit `i` of decoder level `l` (the first sees the concat).
    pub(crate) fn dec_in(&self, l: usize, i: usize) -> usize {
        if i == 0 {
            2 * self.widths[l]
        } else {
            self.widths[l]
        }
    }

    /// The decoder levels that have deep-supervision heads.
    pub fn ds_levels(&self) -> Vec<usize> {
        if self.deep_supervision {
            (1..self.levels().saturating_sub(1)).collect()
        } else {
            Vec::new()
        }
    }

    /// Every parameter, in a fixed order (encoder, decoder from level 0, head, ds heads);
    /// an error if the configuration is invalid.
    pub fn param_specs(&self) -> Result<Vec<ParamSpec>> {
        self.validate()?;
        Ok(self.specs_of_valid())
    }

    /// [`UNetConfig::param_specs`] of a configuration already validated (a [`crate::UNet`]'s).
    pub(crate) fn specs_of_valid(&self) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        let conv = |out: &mut Vec<ParamSpec>, p: String, ci: usize, co: usize, k: [usize; 3]| {
            out.push(ParamSpec {
                name: format!("{p}.weight"),
                shape: vec![co, ci, k[0], k[1], k[2]],
                kind: ParamKind::ConvWeight,
            });
            out.push(ParamSpec {
                name: format!("{p}.bias"),
                shape: vec![co],
                kind: ParamKind::Vector,
            });
        };
        let norm = |out: &mut Vec<ParamSpec>, p: String, c: usize| {
            for s in ["weight", "bias"] {
                out.push(ParamSpec {
                    name: format!("{p}.{s}"),
                    shape: vec![c],
                    kind: ParamKind::Vector,
                });
            }
        };
        for l in 0..self.levels() {
            for i in 0..self.convs_per_block {
                let (ci, co) = (self.enc_in(l, i), self.widths[l]);
                conv(
                    &mut out,
                    format!("encoder.{l}.conv{}", i + 1),
                    ci,
                    co,
                    self.kernels[l],
                );
                norm(&mut out, format!("encoder.{l}.norm{}", i + 1), co);
            }
        }
        for l in 0..self.levels().saturating_sub(1) {
            let (ci, co, k) = (self.widths[l + 1], self.widths[l], self.strides[l + 1]);
            out.push(ParamSpec {
                name: format!("decoder.{l}.up.weight"),
                shape: vec![ci, co, k[0], k[1], k[2]],
                kind: ParamKind::ConvTransposeWeight,
            });
            out.push(ParamSpec {
                name: format!("decoder.{l}.up.bias"),
                shape: vec![co],
                kind: ParamKind::Vector,
            });
            for i in 0..self.convs_per_block {
                let (ci, co) = (self.dec_in(l, i), self.widths[l]);
                conv(
                    &mut out,
                    format!("decoder.{l}.conv{}", i + 1),
                    ci,
                    co,
                    self.kernels[l],
                );
                norm(&mut out, format!("decoder.{l}.norm{}", i + 1), co);
            }
        }
        conv(
            &mut out,
            "head".into(),
            self.widths[0],
            self.num_classes,
            [1; 3],
        );
        for l in self.ds_levels() {
            conv(
                &mut out,
                format!("ds.{l}"),
                self.widths[l],
                self.num_classes,
                [1; 3],
            );
        }
        out
    }

    /// Bytes of every parameter as f32, computed in closed form (no list is built, so a hostile
    /// `convs_per_block` or width costs nothing); `None` when it overflows a `u64`. Needs one
    /// kernel and stride per level. Model files are checked against it before a network is
    /// allocated.
    pub fn param_bytes(&self) -> Option<u64> {
        let l = self.levels();
        if self.kernels.len() != l || self.strides.len() != l {
            return None;
        }
        let vol = |k: [usize; 3]| -> Option<u64> {
            k.iter().try_fold(1u64, |a, &v| a.checked_mul(v as u64))
        };
        // One unit: conv weight co*ci*k and bias, norm scale and shift.
        let unit = |ci: u64, co: u64, k: u64| -> Option<u64> {
            co.checked_mul(ci)?
                .checked_mul(k)?
                .checked_add(co.checked_mul(3)?)
        };
        // A block: the first unit sees `first_ci`, the others `co` (convs_per_block of them).
        let block = |first_ci: u64, co: u64, k: u64| -> Option<u64> {
            let rest = (self.convs_per_block as u64).checked_sub(1)?;
            unit(first_ci, co, k)?.checked_add(rest.checked_mul(unit(co, co, k)?)?)
        };
        let w = |i: usize| self.widths[i] as u64;
        let classes = self.num_classes as u64;
        let head = |c: u64| classes.checked_mul(c)?.checked_add(classes);
        let mut n = head(w(0))?;
        for lv in 0..l {
            let first = if lv == 0 {
                self.in_channels as u64
            } else {
                w(lv - 1)
            };
            n = n.checked_add(block(first, w(lv), vol(self.kernels[lv])?)?)?;
        }
        for lv in 0..l.saturating_sub(1) {
            let up = w(lv + 1)
                .checked_mul(w(lv))?
                .checked_mul(vol(self.strides[lv + 1])?)?
                .checked_add(w(lv))?;
            let dec = block(w(lv).checked_mul(2)?, w(lv), vol(self.kernels[lv])?)?;
            n = n.checked_add(up)?.checked_add(dec)?;
        }
        for lv in self.ds_levels() {
            n = n.checked_add(head(w(lv))?)?;
        }
        n.checked_mul(4)
    }

    /// Number of scalar parameters; an error if the configuration is invalid.
    pub fn num_params(&self) -> Result<usize> {
        Ok(self
            .param_specs()?
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_bytes_counts_every_parameter_and_refuses_overflow() {
        let mut deep = UNetConfig::standard(1, 5, &[4, 8, 16, 32]);
        deep.deep_supervision = true;
        deep.convs_per_block = 3;
        deep.kernels[1] = [1, 3, 5];
        deep.strides[2] = [1, 2, 2];
        for c in [
            UNetConfig::standard(1, 5, &[16, 32, 64, 128]),
            UNetConfig::standard(2, 3, &[2]),
            deep,
        ] {
            assert_eq!(
                c.param_bytes(),
                Some(4 * c.num_params().unwrap() as u64),
                "{c:?}"
            );
        }
        let mut huge = UNetConfig::standard(1, 5, &[1 << 40, 1 << 40]);
        assert_eq!(huge.param_bytes(), None);
        assert!(
            huge.validate()
                .unwrap_err()
                .to_string()
                .contains("more parameters")
        );
        huge.widths = vec![usize::MAX / 2 + 1, 1];
        assert!(huge.validate().is_err());
        huge.widths = vec![2, 2];
        huge.convs_per_block = usize::MAX;
        assert!(huge.validate().is_err());
    }

    #[test]
    fn standard_config_is_valid_and_round_trips() {
        let c = UNetConfig::standard(1, 5, &[16, 32, 64, 128]);
        c.validate().unwrap();
        let j = serde_json::to_string(&c).unwrap();
        let back: UNetConfig = serde_json::from_str(&j).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.size_divisor(), [8, 8, 8]);
        // PyTorch's count for the same network (scripts/fixtures/model_unet.py,
        // `sum(p.numel() for p in UNet(standard_config([16, 32, 64, 128])).parameters())`).
        assert_eq!(c.num_params().unwrap(), 1_402_037);
    }

    #[test]
    fn inconsistent_configs_are_rejected() {
        let ok = UNetConfig::standard(1, 5, &[4, 8, 16]);
        let mut c = ok.clone();
        c.kernels.pop();
        assert!(matches!(c.validate(), Err(ModelError::Config(_))));
        assert!(c.param_specs().is_err());
        assert!(c.num_params().is_err());
        let mut c = ok.clone();
        c.kernels[1] = [2, 3, 3];
        assert!(c.validate().unwrap_err().to_string().contains("kernels[1]"));
        let mut c = ok.clone();
        c.strides[0] = [2; 3];
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.widths[2] = 0;
        assert!(c.validate().unwrap_err().to_string().contains("widths[2]"));
        let mut c = ok.clone();
        c.activation = Activation::LeakyRelu {
            negative_slope: 0.0,
        };
        assert!(c.validate().is_err());
        let mut c = UNetConfig::standard(1, 5, &[4, 8]);
        c.deep_supervision = true;
        assert!(c.validate().is_err());
        assert!(ok.check_input([16, 16, 16], 1).is_ok());
        assert!(ok.check_input([16, 16, 18], 1).is_err());
        assert!(ok.check_input([16, 16, 16], 2).is_err());
    }

    #[test]
    fn anisotropic_levels_give_anisotropic_shapes() {
        let mut c = UNetConfig::standard(1, 5, &[4, 8, 16]);
        c.kernels[0] = [1, 3, 3];
        c.strides[1] = [1, 2, 2];
        c.validate().unwrap();
        assert_eq!(c.size_divisor(), [2, 4, 4]);
        let specs = c.param_specs().unwrap();
        let w = specs
            .iter()
            .find(|p| p.name == "encoder.0.conv1.weight")
            .unwrap();
        assert_eq!(w.shape, vec![4, 1, 1, 3, 3]);
        let up = specs
            .iter()
            .find(|p| p.name == "decoder.0.up.weight")
            .unwrap();
        assert_eq!(up.shape, vec![8, 4, 1, 2, 2]);
        assert_eq!(up.kind, ParamKind::ConvTransposeWeight);
    }
}
