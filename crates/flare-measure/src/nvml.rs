//! Device memory of an NVIDIA GPU through NVML, loaded at run time.
//!
//! `libnvidia-ml.so.1` ships with the driver, so opening it with `dlopen` (through `libloading`)
//! keeps flare free of any build-time CUDA dependency: without a driver the monitor says so and
//! reports everything else. Used memory is `total - free` of the whole device, as FLARE's
//! monitor read it from `nvidia-smi`.
//!
//! This is the crate's only `unsafe`: calling C functions by pointer. Each call passes pointers
//! to live locals of the types the NVML headers declare.

#![allow(unsafe_code)]

use std::{
    ffi::{c_char, c_int, c_uint, c_void},
    fmt,
};

use libloading::{Library, Symbol};

/// NVML's return code; 0 is success.
type NvmlReturn = c_int;
/// An opaque device handle.
type Device = *mut c_void;

/// `nvmlMemory_t`: bytes.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: u64,
    free: u64,
    used: u64,
}

/// Why GPU memory cannot be sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoGpu(pub String);

impl fmt::Display for NoGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An initialised NVML with one device selected.
pub struct Gpu {
    // Kept alive for as long as the function pointers below are used.
    lib: Library,
    device: Device,
    /// The device's index.
    pub index: u32,
    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// The device's memory, bytes.
    pub total_bytes: u64,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gpu")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("total_bytes", &self.total_bytes)
            .finish()
    }
}

impl Gpu {
    /// Loads NVML and opens device `index`; an error says why (no driver, no such device).
    pub fn open(index: u32) -> Result<Gpu, NoGpu> {
        // SAFETY: loading the driver's NVML runs its (trusted, side-effect-free) initialisers.
        let lib = unsafe { Library::new("libnvidia-ml.so.1") }
            .map_err(|e| NoGpu(format!("no NVIDIA driver library (libnvidia-ml.so.1): {e}")))?;
        // SAFETY: signatures as declared in nvml.h.
        unsafe {
            let init: Symbol<unsafe extern "C" fn() -> NvmlReturn> = sym(&lib, b"nvmlInit_v2\0")?;
            check(init(), "nvmlInit_v2")?;
            let count_fn: Symbol<unsafe extern "C" fn(*mut c_uint) -> NvmlReturn> =
                sym(&lib, b"nvmlDeviceGetCount_v2\0")?;
            let mut count: c_uint = 0;
            check(count_fn(&mut count), "nvmlDeviceGetCount_v2")?;
            if index >= count {
                return Err(NoGpu(format!(
                    "GPU index {index} does not exist ({count} NVIDIA GPU(s) present)"
                )));
            }
            let handle_fn: Symbol<unsafe extern "C" fn(c_uint, *mut Device) -> NvmlReturn> =
                sym(&lib, b"nvmlDeviceGetHandleByIndex_v2\0")?;
            let mut device: Device = std::ptr::null_mut();
            check(
                handle_fn(index, &mut device),
                "nvmlDeviceGetHandleByIndex_v2",
            )?;
            let name_fn: Symbol<unsafe extern "C" fn(Device, *mut c_char, c_uint) -> NvmlReturn> =
                sym(&lib, b"nvmlDeviceGetName\0")?;
            let mut buf = [0 as c_char; 96];
            let name = if name_fn(device, buf.as_mut_ptr(), buf.len() as c_uint) == 0 {
                // NVML writes a NUL-terminated string that fits the buffer.
                let bytes: Vec<u8> = buf
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                String::from("unknown NVIDIA GPU")
            };
            let mut gpu = Gpu {
                lib,
                device,
                index,
                name,
                total_bytes: 0,
            };
            gpu.total_bytes = gpu.memory()?.total;
            Ok(gpu)
        }
    }

    /// Memory of the whole device in use now (`total - free`), bytes.
    pub fn used_bytes(&self) -> Result<u64, NoGpu> {
        let m = self.memory()?;
        Ok(m.total.saturating_sub(m.free))
    }

    fn memory(&self) -> Result<Memory, NoGpu> {
        // SAFETY: signature as declared in nvml.h; `m` outlives the call.
        unsafe {
            let f: Symbol<unsafe extern "C" fn(Device, *mut Memory) -> NvmlReturn> =
                sym(&self.lib, b"nvmlDeviceGetMemoryInfo\0")?;
            let mut m = Memory::default();
            check(f(self.device, &mut m), "nvmlDeviceGetMemoryInfo")?;
            Ok(m)
        }
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: signature as in nvml.h; balances the successful nvmlInit_v2 of `open`.
        unsafe {
            if let Ok(f) = sym::<unsafe extern "C" fn() -> NvmlReturn>(&self.lib, b"nvmlShutdown\0")
            {
                f();
            }
        }
    }
}

/// Looks up a symbol, naming it in the error.
///
/// # Safety
/// `T` must be the symbol's true type.
unsafe fn sym<'l, T>(lib: &'l Library, name: &[u8]) -> Result<Symbol<'l, T>, NoGpu> {
    // SAFETY: forwarded to the caller.
    unsafe { lib.get(name) }.map_err(|e| {
        NoGpu(format!(
            "NVML lacks {}: {e}",
            String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name))
        ))
    })
}

/// Turns an NVML return code into an error naming the call.
fn check(code: NvmlReturn, call: &str) -> Result<(), NoGpu> {
    if code == 0 {
        Ok(())
    } else {
        Err(NoGpu(format!("{call} failed with NVML error {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_driver_or_device_is_an_explanation_not_a_crash() {
        // Wherever this runs, opening a device that cannot exist must fail politely.
        match Gpu::open(9999) {
            Ok(g) => panic!("GPU 9999 opened: {g:?}"),
            Err(NoGpu(reason)) => assert!(!reason.is_empty()),
        }
    }
}
