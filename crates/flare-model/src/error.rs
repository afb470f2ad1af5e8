//! Errors of the model crate: bad configurations, bad model files, bad inputs, engine failures.
//!
//! Every variant names what it is about (the file, the tensor, the field) so that a message
//! alone tells a user which file to fix and how.

use std::path::PathBuf;

/// Why a model could not be built, loaded, saved or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The architecture description is inconsistent (lengths, zero widths, strides).
    #[error("invalid U-Net configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file (truncated, corrupt header, bad offsets).
    #[error("{}: not a valid safetensors file: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader reported.
        detail: String,
    },
    /// The file holds no model card in its metadata.
    #[error("{}: no model card (metadata key `{key}`) in the safetensors header", path.display())]
    MissingCard {
        /// The file.
        path: PathBuf,
        /// The metadata key looked for.
        key: &'static str,
    },
    /// The model card is not valid JSON for this crate's card format.
    #[error("{}: bad model card JSON: {detail}", path.display())]
    BadCard {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// The parser's message, with line and column.
        detail: String,
    },
    /// The card declares a format version this build does not read.
    #[error("{}: model card format version {found} is not supported (this build reads {supported})", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the card.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A tensor the architecture needs is not in the file.
    #[error("{}: tensor `{name}` is missing (expected shape {expected:?})", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The parameter name.
        name: String,
        /// The shape the architecture expects (PyTorch layout).
        expected: Vec<usize>,
    },
    /// The file holds a tensor the architecture has no parameter for.
    #[error("{}: unexpected tensor `{name}` (shape {shape:?}) is not a parameter of this architecture", path.display())]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A tensor has another shape than the architecture says.
    #[error("{}: tensor `{name}` has shape {found:?}, the architecture expects {expected:?}", path.display())]
    WrongShape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Shape the architecture expects (PyTorch layout).
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored with another element type than f32.
    #[error("{}: tensor `{name}` has dtype {found}, expected F32", path.display())]
    WrongDtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype in the file.
        found: String,
    },
    /// A tensor holds NaN or infinite values.
    #[error("{}: tensor `{name}` holds {count} non-finite values", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// How many values are NaN or infinite.
        count: usize,
    },
    /// The card's architecture has more parameter bytes than the whole file (for a stage of a
    /// multi-stage file, than that stage's part): its tensors cannot all be there, so no
    /// network is allocated.
    #[error("{}: the model card's architecture has {needed} bytes of parameters but the file has only {len} bytes", path.display())]
    ArchitectureExceedsFile {
        /// The file.
        path: PathBuf,
        /// Bytes of f32 parameters the architecture needs.
        needed: u64,
        /// Bytes in the file (or the stage's part).
        len: u64,
    },
    /// A network would need more memory than is available; nothing was allocated.
    #[error("{what} is too large: {source}")]
    TooLarge {
        /// What would have been allocated, naming the file where there is one.
        what: String,
        /// Needed and available memory.
        source: flare_volume::memory::InsufficientMemory,
    },
    /// An input (image, labels, gradients) does not fit the network.
    #[error("{0}")]
    Input(String),
    /// A training step's loss is NaN or infinite (nothing was updated).
    #[error("the loss is not finite ({0})")]
    NonFiniteLoss(f64),
    /// An engine operation refused its operands; `layer` names the network layer.
    #[error("{layer}: {source}")]
    Engine {
        /// The parameter-name prefix of the layer (e.g. `decoder.0.conv1`).
        layer: String,
        /// The engine's error.
        source: flare_engine::EngineError,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Attaches a layer name to an engine result.
pub(crate) trait LayerContext<T> {
    /// Wraps an engine error with the layer's name.
    fn layer(self, name: &str) -> Result<T>;
}

impl<T> LayerContext<T> for std::result::Result<T, flare_engine::EngineError> {
    fn layer(self, name: &str) -> Result<T> {
        self.map_err(|source| ModelError::Engine {
            layer: name.to_string(),
            source,
        })
    }
}
