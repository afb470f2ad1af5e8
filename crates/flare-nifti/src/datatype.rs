//! NIfTI voxel datatypes and byte order.

/// A voxel datatype this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// `uint8` (NIfTI code 2).
    UInt8,
    /// `int8` (code 256).
    Int8,
    /// `int16` (code 4).
    Int16,
    /// `uint16` (code 512).
    UInt16,
    /// `int32` (code 8).
    Int32,
    /// `uint32` (code 768).
    UInt32,
    /// `float32` (code 16).
    Float32,
    /// `float64` (code 64).
    Float64,
}

impl DataType {
    /// Every supported datatype.
    pub const ALL: [DataType; 8] = [
        DataType::UInt8,
        DataType::Int8,
        DataType::Int16,
        DataType::UInt16,
        DataType::Int32,
        DataType::UInt32,
        DataType::Float32,
        DataType::Float64,
    ];

    /// The datatype of a NIfTI `datatype` code, if supported.
    pub fn from_code(code: i32) -> Option<DataType> {
        Some(match code {
            2 => DataType::UInt8,
            256 => DataType::Int8,
            4 => DataType::Int16,
            512 => DataType::UInt16,
            8 => DataType::Int32,
            768 => DataType::UInt32,
            16 => DataType::Float32,
            64 => DataType::Float64,
            _ => return None,
        })
    }

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i32 {
        match self {
            DataType::UInt8 => 2,
            DataType::Int8 => 256,
            DataType::Int16 => 4,
            DataType::UInt16 => 512,
            DataType::Int32 => 8,
            DataType::UInt32 => 768,
            DataType::Float32 => 16,
            DataType::Float64 => 64,
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            DataType::UInt8 | DataType::Int8 => 1,
            DataType::Int16 | DataType::UInt16 => 2,
            DataType::Int32 | DataType::UInt32 | DataType::Float32 => 4,
            DataType::Float64 => 8,
        }
    }

    /// The lower-case name used by nibabel and numpy (`"int16"`, `"float32"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::UInt8 => "uint8",
            DataType::Int8 => "int8",
            DataType::Int16 => "int16",
            DataType::UInt16 => "uint16",
            DataType::Int32 => "int32",
            DataType::UInt32 => "uint32",
            DataType::Float32 => "float32",
            DataType::Float64 => "float64",
        }
    }

    /// Whether voxels are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, DataType::Float32 | DataType::Float64)
    }

    /// The smallest and largest value the type holds (as f64; exact for every integer type).
    pub fn range(self) -> (f64, f64) {
        match self {
            DataType::UInt8 => (0.0, u8::MAX as f64),
            DataType::Int8 => (i8::MIN as f64, i8::MAX as f64),
            DataType::Int16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::UInt16 => (0.0, u16::MAX as f64),
            DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::UInt32 => (0.0, u32::MAX as f64),
            DataType::Float32 => (f32::MIN as f64, f32::MAX as f64),
            DataType::Float64 => (f64::MIN, f64::MAX),
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The NIfTI name of any datatype code, supported or not (for error messages).
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "unknown",
        1 => "binary",
        2 => "uint8",
        4 => "int16",
        8 => "int32",
        16 => "float32",
        32 => "complex64",
        64 => "float64",
        128 => "rgb24",
        256 => "int8",
        511 => "float128",
        512 => "uint16",
        768 => "uint32",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "rgba32",
        _ => "unknown",
    }
}

/// Byte order of the header and voxels in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Least significant byte first (x86, ARM; what this crate writes).
    Little,
    /// Most significant byte first.
    Big,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for t in DataType::ALL {
            assert_eq!(DataType::from_code(t.code()), Some(t));
            assert_eq!(code_name(t.code()), t.name());
        }
        assert_eq!(DataType::from_code(32), None);
        assert_eq!(DataType::from_code(1024), None);
    }
}
