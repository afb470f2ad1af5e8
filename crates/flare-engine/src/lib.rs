//! flare's CPU engine: the layers of a 3D segmentation network, forward and backward, on
//! channels-last f32 tensors, with hand-written SIMD kernels.
//!
//! # Layout
//! A [`Tensor`] is `[N, D, H, W, C]` with channels fastest; `W`, `H`, `D` are a volume's `i`,
//! `j`, `k` axes; tensors the engine allocates start on a 64-byte boundary. Convolution
//! weights are `[kd][kh][kw][ci][co]` ([`Conv3dWeight`] documents the mapping from PyTorch's
//! `[co][ci][kd][kh][kw]`). Shape rules live in one place ([`Conv3dSpec`] and the `shape`
//! module) and follow PyTorch's.
//!
//! # What is here
//! - Convolution ([`conv3d_forward`], [`conv3d_backward_data`], [`conv3d_backward_weight`]):
//!   kernels 1 or 3 (any size works) per axis, stride 1 or 2, zero padding, bias.
//! - Transposed convolution with stride = kernel ([`conv_transpose3d_forward`] and backward),
//!   and trilinear resize ([`resize_trilinear`]).
//! - Instance norm ([`instance_norm_forward`]/[`instance_norm_backward`]), LeakyReLU/ReLU,
//!   residual add, channel concat.
//! - Training fusion: [`instance_norm_act_forward`] and [`instance_norm_act_backward`] (norm and
//!   LeakyReLU in one pass each way).
//! - Inference fusion: [`instance_norm_act_inplace`] (instance norm + LeakyReLU in place on a
//!   convolution's output), and [`conv3d_forward_accumulate`] with [`Conv3dWeight::split_input_channels`] to convolve a
//!   skip-connection concat without materialising it; `*_into` variants reuse output buffers.
//! - Losses with logit gradients ([`softmax`], [`cross_entropy`], [`soft_dice`]), optimisers
//!   ([`Sgd`], [`AdamW`]) and schedules ([`LrSchedule`]).
//! - [`retain_freed_memory`]: the allocator policy programs set so that freed tensors are
//!   reused without page faults.
//! - [`fma_ceiling`]: the machine's FMA peak, for benchmarks (`examples/conv_bench.rs`).
//!
//! Every layer is checked against PyTorch (float64) by fixtures that
//! `scripts/fixtures/engine_fixtures.py` writes into `tests/fixtures/`.
//!
//! # Kernels and dispatch
//! Each hot loop is a small micro-kernel with three builds: AVX-512F, AVX2+FMA and portable
//! scalar (`src/conv3d/{forward,backward_weight}/{avx512,avx2,scalar}.rs`; the forward
//! "gather" kernel also serves the input gradient and the transposed convolution, with
//! transposed weights or strided offsets). The instruction set is an [`Isa`] carried by a
//! [`Ctx`]: [`Ctx::new`] takes the process-wide choice (best detected, lowered by
//! `FLARE_ISA=scalar|avx2|avx512`, decided once and cached), [`Ctx::with_isa`] forces one (the
//! tests run every supported path and compare it with the scalar one). Kernels are the only
//! `unsafe` code; the safe drivers around them check every offset a kernel call will touch.
//! Memory-bound layers (norms, activations, losses) are plain Rust that the compiler
//! vectorises.
//!
//! # bf16 (issue 11)
//! A [`Ctx`] with [`Precision::Bf16`] ([`Ctx::with_precision`]) runs the convolutions' three
//! passes (forward, input gradient, weight gradient; plain and transposed) with their operands
//! rounded to bfloat16 (round to nearest even, [`f32_to_bf16`]) and fp32 sums, on AVX512-BF16
//! kernels (`vdpbf16ps`: the gather kernel pairs input channels,
//! `src/conv3d/forward/avx512bf16.rs`; the weight-gradient kernel pairs voxels,
//! `src/conv3d/backward_weight/avx512bf16.rs`), detected once ([`Bf16Kernel::native`]). Outputs,
//! norms, losses and optimisers stay fp32. Without
//! avx512_bf16 a bf16 request keeps fp32, so such CPUs run exactly the fp32 kernels. The
//! portable [`Bf16Kernel::Reference`] defines the arithmetic; the native kernels equal it bit
//! for bit (`tests/bf16.rs`). No AMX kernel yet: it awaits a machine with amx_bf16 to test on.
//!
//! # Threads
//! Ops split their work with rayon over the current pool (wrap calls in
//! `rayon::ThreadPool::install` to fix a thread count). Results do not depend on the thread
//! count: each output element is summed in a fixed order, and reductions (weight gradients)
//! use chunk boundaries fixed by the shapes and add the chunks in order.
//!
//! # Example
//! ```
//! use flare_engine::{Conv3dSpec, Conv3dWeight, Ctx, Shape5, Tensor, conv3d_forward};
//! let x = Tensor::from_vec(Shape5::new(1, 4, 4, 4, 2), vec![1.0; 128])?;
//! let w = Conv3dWeight::from_dhwio([3, 3, 3], 2, 8, vec![0.5; 27 * 2 * 8])?;
//! let y = conv3d_forward(&Ctx::new(), &x, &w, None, &Conv3dSpec::same([3, 3, 3])?)?;
//! assert_eq!(y.shape(), Shape5::new(1, 4, 4, 4, 8));
//! // A corner voxel sees 2 x 2 x 2 inputs of 2 channels.
//! assert_eq!(y.data()[0], 8.0);
//! # Ok::<(), flare_engine::EngineError>(())
//! ```

#![deny(missing_docs)]

mod aligned;
mod bf16;
mod conv3d;
mod elementwise;
mod error;
mod fused;
mod isa;
mod loss;
mod memory;
mod norm;
mod optim;
mod peak;
mod resize;
mod shape;
mod tensor;

pub use crate::{
    bf16::{Bf16Tensor, bf16_round, bf16_to_f32, f32_to_bf16},
    conv3d::{
        Conv3dGrads, Conv3dWeight, ConvInput, conv_transpose3d_backward_data,
        conv_transpose3d_backward_weight, conv_transpose3d_forward, conv_transpose3d_forward_into,
        conv_transpose3d_output_shape, conv3d_backward_data, conv3d_backward_data_into,
        conv3d_backward_weight, conv3d_forward, conv3d_forward_accumulate, conv3d_forward_into,
    },
    elementwise::{
        add_inplace, concat_channels, flip_spatial, leaky_relu, leaky_relu_backward,
        leaky_relu_inplace, split_channels,
    },
    error::{EngineError, Result},
    fused::{NormAct, instance_norm_act_inplace, instance_norm_act_to_bf16},
    isa::{Bf16Kernel, Ctx, Isa, Precision},
    loss::{LossGrad, cross_entropy, soft_dice, softmax, softmax_inplace},
    memory::retain_freed_memory,
    norm::{
        NormGrads, NormStats, instance_norm_act_backward, instance_norm_act_forward,
        instance_norm_backward, instance_norm_forward,
    },
    optim::{AdamState, AdamW, LrSchedule, Sgd, SgdState},
    peak::fma_ceiling,
    resize::{resize_trilinear, resize_trilinear_backward},
    shape::Conv3dSpec,
    tensor::{Shape5, Tensor},
};
