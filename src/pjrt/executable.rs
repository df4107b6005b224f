//! `PJRT_LoadedExecutable`: compile from StableHLO text, execute, serialize, deserialize.
//!
//! Arguments are checked against the program's `@main` signature (parsed from the MLIR text at
//! compile time and carried inside serialized executables) before anything reaches PJRT, so a
//! wrong count, element type or shape is an [`Error::InvalidArgument`], never a crash.
//!
//! [`LoadedExecutable::memory_stats`] reads what the compiler planned the program to need in
//! memory (`PJRT_Executable_GetCompiledMemoryStats`), once per executable, so that a caller can
//! compare it with what the device has before running it.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use once_cell::sync::OnceCell;

use super::api::{destroy_on_drop, implemented, pjrt_call, Args};
use super::buffer::Buffer;
use super::client::{Client, Device};
use super::compile_options::CompileOptions;
use super::event::Event;
use super::sys;
use crate::error::{Error, Result};
use crate::types::{DType, Shape};

/// Element type and static shape of one parameter or result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorSpec {
    /// Element type.
    pub dtype: DType,
    /// Dimensions (empty for a scalar).
    pub dims: Vec<i64>,
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, Shape(self.dims.clone()))
    }
}

/// Parameter and result types of a program's `@main` function.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Parameters, in order.
    pub inputs: Vec<TensorSpec>,
    /// Results, in order.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// Parses the signature of `func.func [public] @main(...) -> ...` from StableHLO text.
    /// `None` when there is no such function or a type is not a static tensor of an element
    /// type nlsq knows (then arguments are not pre-checked).
    pub fn parse_main(text: &str) -> Option<Signature> {
        let start = text.find("@main(")? + "@main".len();
        let (params, rest) = balanced(&text[start..])?;
        let mut inputs = Vec::new();
        for p in split_top(params) {
            let ty = p.split_once(':')?.1.trim();
            inputs.push(parse_tensor_type(ty)?);
        }
        let rest = rest.trim_start();
        let mut outputs = Vec::new();
        if let Some(r) = rest.strip_prefix("->") {
            let r = r.trim_start();
            if r.starts_with('(') {
                let (results, _) = balanced(r)?;
                for t in split_top(results) {
                    outputs.push(parse_tensor_type(t.trim())?);
                }
            } else {
                outputs.push(parse_tensor_type(r)?);
            }
        }
        Some(Signature { inputs, outputs })
    }

    fn encode(&self) -> String {
        let list = |v: &[TensorSpec]| {
            v.iter()
                .map(|t| {
                    format!(
                        "{}:{}",
                        t.dtype.mlir_name(),
                        t.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("{}->{}", list(&self.inputs), list(&self.outputs))
    }

    fn decode(s: &str) -> Option<Signature> {
        let (i, o) = s.split_once("->")?;
        let list = |s: &str| -> Option<Vec<TensorSpec>> {
            if s.is_empty() {
                return Some(Vec::new());
            }
            s.split(',')
                .map(|t| {
                    let (d, dims) = t.split_once(':')?;
                    let dims = if dims.is_empty() {
                        Vec::new()
                    } else {
                        dims.split('x').map(|x| x.parse().ok()).collect::<Option<Vec<i64>>>()?
                    };
                    Some(TensorSpec {
                        dtype: dtype_from_mlir(d)?,
                        dims,
                    })
                })
                .collect()
        };
        Some(Signature {
            inputs: list(i)?,
            outputs: list(o)?,
        })
    }
}

/// Given text starting with an opening bracket, returns the inside of the balanced group and the rest.
fn balanced(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '<' | '{' | '[' => depth += 1,
            ')' | '>' | '}' | ']' => {
                // `->` inside a group is not a closing bracket.
                if c == '>' && s[..i].ends_with('-') {
                    continue;
                }
                depth -= 1;
                if depth == 0 {
                    return Some((&s[1..i], &s[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on commas that are not nested in brackets.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut last = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '<' | '{' | '[' => depth += 1,
            ')' | '>' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    if !s[last..].trim().is_empty() {
        out.push(&s[last..]);
    }
    out
}

fn dtype_from_mlir(s: &str) -> Option<DType> {
    Some(match s {
        "f64" => DType::F64,
        "f32" => DType::F32,
        "i64" => DType::I64,
        "i32" => DType::I32,
        "i1" => DType::Bool,
        _ => return None,
    })
}

/// Parses `tensor<3x4xf64>` (possibly followed by attributes) into a spec.
fn parse_tensor_type(s: &str) -> Option<TensorSpec> {
    let s = s.strip_prefix("tensor")?;
    let (inner, _) = balanced(s)?;
    let mut parts: Vec<&str> = inner.split('x').collect();
    let dtype = dtype_from_mlir(parts.pop()?.trim())?;
    let dims = parts
        .iter()
        .map(|d| d.trim().parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(TensorSpec { dtype, dims })
}

const ENVELOPE_MAGIC: &[u8; 8] = b"NLSQEXE1";

/// Length of the envelope's head (magic, signature length, signature) in front of the plugin's
/// bytes, or what is wrong with it.
pub(crate) fn envelope_head_len(bytes: &[u8]) -> std::result::Result<usize, &'static str> {
    let rest = bytes
        .strip_prefix(ENVELOPE_MAGIC.as_slice())
        .ok_or("not a serialized nlsq executable (bad magic)")?;
    let sig_len = rest.get(..4).ok_or("truncated header")?;
    let sig_len = u32::from_le_bytes([sig_len[0], sig_len[1], sig_len[2], sig_len[3]]) as usize;
    if rest.len() - 4 < sig_len {
        return Err("truncated signature");
    }
    Ok(ENVELOPE_MAGIC.len() + 4 + sig_len)
}

/// The memory one execution of a compiled program needs, as the compiler planned it
/// (`PJRT_Executable_GetCompiledMemoryStats`, which mirrors `xla::CompiledMemoryStats`). The
/// plain fields are of the device's default memory (the host's memory on the CPU plugin);
/// the `host_*` fields are of host memory a device program uses besides it (offloaded arrays).
/// Negative values a plugin might report are read as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CompiledMemoryStats {
    /// The program's machine code.
    pub generated_code_bytes: u64,
    /// All arguments together.
    pub argument_bytes: u64,
    /// All results together.
    pub output_bytes: u64,
    /// The part of the results that reuses argument memory (donated arguments).
    pub alias_bytes: u64,
    /// Scratch memory the program allocates for one execution and frees at its end.
    pub temp_bytes: u64,
    /// Machine code in host memory.
    pub host_generated_code_bytes: u64,
    /// Arguments in host memory.
    pub host_argument_bytes: u64,
    /// Results in host memory.
    pub host_output_bytes: u64,
    /// Results in host memory that reuse argument memory.
    pub host_alias_bytes: u64,
    /// Scratch memory in host memory.
    pub host_temp_bytes: u64,
    /// The compiler's peak of device memory in use during an execution, where the plugin
    /// reports one (zero where it does not).
    pub peak_bytes: u64,
}

impl CompiledMemoryStats {
    /// Device memory the program occupies while it runs: machine code, arguments, results
    /// that are not aliased to arguments, and scratch memory
    /// (`generated_code + argument + output - alias + temp`, the sum XLA's own memory
    /// analysis uses, with the code added because it stays loaded on the device).
    pub fn device_bytes(&self) -> u64 {
        self.generated_code_bytes
            .saturating_add(self.argument_bytes)
            .saturating_add(self.execution_bytes())
    }

    /// Device memory one execution allocates once its arguments are on the device: results
    /// that are not aliased to arguments, and scratch memory (`output - alias + temp`).
    pub fn execution_bytes(&self) -> u64 {
        self.output_bytes
            .saturating_sub(self.alias_bytes)
            .saturating_add(self.temp_bytes)
    }

    fn from_raw(a: &sys::PJRT_Executable_GetCompiledMemoryStats_Args) -> CompiledMemoryStats {
        let bytes = |v: i64| u64::try_from(v).unwrap_or(0);
        CompiledMemoryStats {
            generated_code_bytes: bytes(a.generated_code_size_in_bytes),
            argument_bytes: bytes(a.argument_size_in_bytes),
            output_bytes: bytes(a.output_size_in_bytes),
            alias_bytes: bytes(a.alias_size_in_bytes),
            temp_bytes: bytes(a.temp_size_in_bytes),
            host_generated_code_bytes: bytes(a.host_generated_code_size_in_bytes),
            host_argument_bytes: bytes(a.host_argument_size_in_bytes),
            host_output_bytes: bytes(a.host_output_size_in_bytes),
            host_alias_bytes: bytes(a.host_alias_size_in_bytes),
            host_temp_bytes: bytes(a.host_temp_size_in_bytes),
            peak_bytes: bytes(a.peak_memory_in_bytes),
        }
    }
}

/// A compiled program loaded on a client's devices.
pub struct LoadedExecutable {
    raw: NonNull<sys::PJRT_LoadedExecutable>,
    client: Client,
    num_outputs: usize,
    signature: Option<Arc<Signature>>,
    /// The bytes it was loaded from, when it came from [`Client::deserialize`]: the pinned CPU
    /// plugin's `PJRT_Executable_Serialize` of a deserialized executable leaves out the machine
    /// code (the entry comes back smaller, and executing what that loads fails with
    /// "Function ... not found"), so [`LoadedExecutable::serialize`] returns these instead.
    serialized: Option<Arc<[u8]>>,
    /// [`LoadedExecutable::memory_stats`], read on first use.
    memory_stats: OnceCell<Option<CompiledMemoryStats>>,
}

// SAFETY: PjRtLoadedExecutable::Execute is thread-safe (XLA runs concurrent executions of one
// executable, each with its own buffers); the C API adds no thread affinity.
unsafe impl Send for LoadedExecutable {}
// SAFETY: see `Send`.
unsafe impl Sync for LoadedExecutable {}

destroy_on_drop! {
    LoadedExecutable,
    |e| e.client.api(),
    PJRT_LoadedExecutable_Destroy,
    PJRT_LoadedExecutable_Destroy_Args { executable: e.raw.as_ptr() },
    "destroying an executable"
}

impl fmt::Debug for LoadedExecutable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedExecutable")
            .field("num_outputs", &self.num_outputs)
            .field("signature", &self.signature)
            .finish()
    }
}

/// A borrowed `PJRT_Executable` (the unloaded view), destroyed on drop.
struct ExecutableView<'a> {
    raw: *mut sys::PJRT_Executable,
    client: &'a Client,
}

destroy_on_drop! {
    ExecutableView<'_>,
    |e| e.client.api(),
    PJRT_Executable_Destroy,
    PJRT_Executable_Destroy_Args { executable: e.raw },
    "releasing an executable view"
}

impl Client {
    /// Compiles StableHLO MLIR text (which must define `func.func @main`) with the default
    /// [`CompileOptions`] (one replica, one partition).
    ///
    /// # Errors
    /// [`Error::Pjrt`] carrying the compiler's message for text that does not parse or verify.
    pub fn compile(&self, mlir: &str) -> Result<LoadedExecutable> {
        self.compile_with(mlir, &CompileOptions::default())
    }

    /// Compiles with explicit options.
    ///
    /// # Errors
    /// As [`Client::compile`], plus [`Error::InvalidOption`] for invalid options.
    pub fn compile_with(&self, mlir: &str, options: &CompileOptions) -> Result<LoadedExecutable> {
        options.validate()?;
        if mlir.trim().is_empty() {
            return Err(Error::InvalidArgument {
                what: "compile",
                reason: "empty program text".into(),
            });
        }
        let mut code = mlir.as_bytes().to_vec();
        let format = b"mlir";
        let mut program = sys::PJRT_Program::new();
        program.code = code.as_mut_ptr().cast();
        program.code_size = code.len();
        program.format = format.as_ptr().cast();
        program.format_size = format.len();
        let opts = options.encode();
        let mut a = sys::PJRT_Client_Compile_Args::new();
        a.client = self.raw();
        a.program = &program;
        a.compile_options = opts.as_ptr().cast();
        a.compile_options_size = opts.len();
        pjrt_call!(self.api(), PJRT_Client_Compile, &mut a, || {
            "compiling a StableHLO program".into()
        })?;
        LoadedExecutable::wrap(self, a.executable, Signature::parse_main(mlir).map(Arc::new))
    }

    /// Loads an executable produced by [`LoadedExecutable::serialize`] (possibly in another process).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the bytes are not an nlsq envelope; [`Error::Pjrt`] when the
    /// plugin rejects the payload (other plugin or version, corrupt bytes).
    pub fn deserialize(&self, bytes: &[u8]) -> Result<LoadedExecutable> {
        let bad = |reason: &str| Error::InvalidArgument {
            what: "deserialize",
            reason: reason.to_string(),
        };
        let head_len = envelope_head_len(bytes).map_err(bad)?;
        let sig_text = std::str::from_utf8(&bytes[ENVELOPE_MAGIC.len() + 4..head_len])
            .map_err(|_| bad("signature is not UTF-8"))?;
        let signature = if sig_text.is_empty() {
            None
        } else {
            Some(Arc::new(
                Signature::decode(sig_text).ok_or_else(|| bad("unreadable signature"))?,
            ))
        };
        let payload = &bytes[head_len..];
        if payload.is_empty() {
            return Err(bad("empty payload"));
        }
        let mut a = sys::PJRT_Executable_DeserializeAndLoad_Args::new();
        a.client = self.raw();
        a.serialized_executable = payload.as_ptr().cast();
        a.serialized_executable_size = payload.len();
        pjrt_call!(self.api(), PJRT_Executable_DeserializeAndLoad, &mut a, || {
            "loading a serialized executable".into()
        })?;
        let mut exe = LoadedExecutable::wrap(self, a.loaded_executable, signature)?;
        exe.serialized = Some(Arc::from(bytes));
        Ok(exe)
    }
}

impl LoadedExecutable {
    fn wrap(
        client: &Client,
        raw: *mut sys::PJRT_LoadedExecutable,
        signature: Option<Arc<Signature>>,
    ) -> Result<LoadedExecutable> {
        let raw = NonNull::new(raw).ok_or_else(|| Error::InvalidArgument {
            what: "compile",
            reason: "PJRT returned no executable".into(),
        })?;
        let mut exe = LoadedExecutable {
            raw,
            client: client.clone(),
            num_outputs: 0,
            signature,
            serialized: None,
            memory_stats: OnceCell::new(),
        };
        let view = exe.view()?;
        let mut n = sys::PJRT_Executable_NumOutputs_Args::new();
        n.executable = view.raw;
        pjrt_call!(client.api(), PJRT_Executable_NumOutputs, &mut n, || {
            "counting executable outputs".into()
        })?;
        drop(view);
        exe.num_outputs = n.num_outputs;
        if let Some(sig) = &exe.signature {
            if sig.outputs.len() != exe.num_outputs {
                // The text parse disagrees with the compiled program: trust PJRT, skip pre-checks.
                exe.signature = None;
            }
        }
        Ok(exe)
    }

    fn view(&self) -> Result<ExecutableView<'_>> {
        let mut g = sys::PJRT_LoadedExecutable_GetExecutable_Args::new();
        g.loaded_executable = self.raw.as_ptr();
        pjrt_call!(self.client.api(), PJRT_LoadedExecutable_GetExecutable, &mut g, || {
            "reading an executable".into()
        })?;
        Ok(ExecutableView {
            raw: g.executable,
            client: &self.client,
        })
    }

    /// Number of results of `@main`.
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// The parameter and result types, when known.
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_deref()
    }

    /// The client that owns this executable.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// What one execution needs in memory, as the compiler planned it; `None` where the plugin
    /// does not say (it lacks `PJRT_Executable_GetCompiledMemoryStats`, an older plugin, or
    /// answers that it is unimplemented). Read from the plugin once per executable, then
    /// kept.
    ///
    /// # Errors
    /// [`Error::Pjrt`] when the plugin fails otherwise (then it is asked again next time).
    pub fn memory_stats(&self) -> Result<Option<CompiledMemoryStats>> {
        self.memory_stats.get_or_try_init(|| self.read_memory_stats()).copied()
    }

    fn read_memory_stats(&self) -> Result<Option<CompiledMemoryStats>> {
        let view = self.view()?;
        let mut a = sys::PJRT_Executable_GetCompiledMemoryStats_Args::new();
        a.executable = view.raw;
        let read = pjrt_call!(
            self.client.api(),
            PJRT_Executable_GetCompiledMemoryStats,
            &mut a,
            || { "reading an executable's memory needs".into() }
        );
        Ok(implemented(read)?.then(|| CompiledMemoryStats::from_raw(&a)))
    }

    /// Runs the program on the default device and waits for it to finish. Returns one buffer
    /// per result of `@main`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the arguments' count, element types or shapes differ from
    /// the signature, or a buffer belongs to another client (checked before anything reaches
    /// PJRT); [`Error::Pjrt`] when execution fails.
    pub fn execute(&self, args: &[&Buffer]) -> Result<Vec<Buffer>> {
        self.execute_impl(None, args)
    }

    /// Like [`LoadedExecutable::execute`], on a chosen device of the client.
    ///
    /// # Errors
    /// As [`LoadedExecutable::execute`].
    pub fn execute_on(&self, device: &Device<'_>, args: &[&Buffer]) -> Result<Vec<Buffer>> {
        if !self.client.owns_device(device) {
            return Err(Error::InvalidArgument {
                what: "execute",
                reason: format!("device {device:?} belongs to another client"),
            });
        }
        self.execute_impl(Some(device.raw()), args)
    }

    fn check_args(&self, args: &[&Buffer]) -> Result<()> {
        let bad = |reason: String| Error::InvalidArgument {
            what: "execute",
            reason,
        };
        for (i, b) in args.iter().enumerate() {
            if !Arc::ptr_eq(&b.client().inner, &self.client.inner) {
                return Err(bad(format!("argument {i} belongs to another client")));
            }
        }
        let Some(sig) = &self.signature else { return Ok(()) };
        if args.len() != sig.inputs.len() {
            return Err(bad(format!(
                "expected {} arguments, got {}",
                sig.inputs.len(),
                args.len()
            )));
        }
        for (i, (b, spec)) in args.iter().zip(&sig.inputs).enumerate() {
            let dtype = b.dtype()?;
            let dims = b.dims()?;
            if dtype != spec.dtype || dims != spec.dims {
                return Err(bad(format!(
                    "argument {i} is {dtype}{} but the program expects {spec}",
                    Shape(dims)
                )));
            }
        }
        Ok(())
    }

    fn execute_impl(&self, device: Option<*mut sys::PJRT_Device>, args: &[&Buffer]) -> Result<Vec<Buffer>> {
        self.check_args(args)?;
        let arg_ptrs: Vec<*mut sys::PJRT_Buffer> = args.iter().map(|b| b.raw()).collect();
        let arg_lists: [*const *mut sys::PJRT_Buffer; 1] = [arg_ptrs.as_ptr()];
        let mut outs: Vec<*mut sys::PJRT_Buffer> = vec![std::ptr::null_mut(); self.num_outputs];
        let out_lists: [*mut *mut sys::PJRT_Buffer; 1] = [outs.as_mut_ptr()];
        let mut events: [*mut sys::PJRT_Event; 1] = [std::ptr::null_mut()];
        let mut options = sys::PJRT_ExecuteOptions::new();
        let mut a = sys::PJRT_LoadedExecutable_Execute_Args::new();
        a.executable = self.raw.as_ptr();
        a.options = &mut options;
        a.argument_lists = arg_lists.as_ptr();
        a.num_devices = 1;
        a.num_args = arg_ptrs.len();
        a.output_lists = out_lists.as_ptr();
        a.device_complete_events = events.as_mut_ptr();
        a.execute_device = device.unwrap_or(std::ptr::null_mut());
        pjrt_call!(self.client.api(), PJRT_LoadedExecutable_Execute, &mut a, || {
            "executing a program".into()
        })?;
        // Take ownership of every output first, so they are freed whatever happens next.
        let outputs: Vec<Buffer> = outs.iter().filter_map(|&p| Buffer::from_raw(&self.client, p)).collect();
        if let Some(ev) = Event::from_raw(self.client.api(), events[0]) {
            ev.wait("program execution")?;
        }
        if outputs.len() != self.num_outputs {
            return Err(Error::InvalidArgument {
                what: "execute",
                reason: format!("PJRT returned {} of {} outputs", outputs.len(), self.num_outputs),
            });
        }
        Ok(outputs)
    }

    /// Serializes the executable (machine code included) with its signature, for
    /// [`Client::deserialize`] in this or another process using the same plugin. An executable
    /// that was itself deserialized returns the bytes it was loaded from.
    ///
    /// # Errors
    /// [`Error::Pjrt`] when the plugin cannot serialize.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        if let Some(bytes) = &self.serialized {
            return Ok(bytes.to_vec());
        }
        let view = self.view()?;
        let mut a = sys::PJRT_Executable_Serialize_Args::new();
        a.executable = view.raw;
        pjrt_call!(self.client.api(), PJRT_Executable_Serialize, &mut a, || {
            "serializing an executable".into()
        })?;
        // SAFETY: the bytes are valid until the deleter is called below.
        let payload = unsafe { super::plugin::bytes(a.serialized_bytes.cast(), a.serialized_bytes_size) }.to_vec();
        if let Some(deleter) = a.serialized_executable_deleter {
            // SAFETY: the deleter and object come from the same successful call; called once.
            unsafe { deleter(a.serialized_executable) };
        }
        let sig = self.signature.as_ref().map(|s| s.encode()).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + 4 + sig.len() + payload.len());
        out.extend_from_slice(ENVELOPE_MAGIC);
        out.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        out.extend_from_slice(sig.as_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_main_signature_with_attributes_and_multiple_results() {
        let text = "module @m {\n func.func public @main(%arg0: tensor<3x4xf64> {mhlo.sharding = \"{replicated}\"}, %b: tensor<i1>) -> (tensor<3xf32>, tensor<i64>) {\n }\n}";
        let sig = Signature::parse_main(text).unwrap();
        assert_eq!(
            sig.inputs,
            vec![
                TensorSpec {
                    dtype: DType::F64,
                    dims: vec![3, 4]
                },
                TensorSpec {
                    dtype: DType::Bool,
                    dims: vec![]
                }
            ]
        );
        assert_eq!(
            sig.outputs,
            vec![
                TensorSpec {
                    dtype: DType::F32,
                    dims: vec![3]
                },
                TensorSpec {
                    dtype: DType::I64,
                    dims: vec![]
                }
            ]
        );
        assert_eq!(Signature::decode(&sig.encode()).unwrap(), sig);
    }

    #[test]
    fn parses_single_result_and_no_params() {
        let sig = Signature::parse_main("func.func @main() -> tensor<2xi32> {").unwrap();
        assert!(sig.inputs.is_empty());
        assert_eq!(sig.outputs[0].dims, vec![2]);
        assert_eq!(Signature::decode(&sig.encode()).unwrap(), sig);
    }

    #[test]
    fn dynamic_or_unknown_types_give_no_signature() {
        assert!(Signature::parse_main("func.func @main(%a: tensor<?xf64>) -> tensor<f64>").is_none());
        assert!(Signature::parse_main("func.func @main(%a: tensor<2xbf16>) -> tensor<f64>").is_none());
        assert!(Signature::parse_main("func.func @other(%a: tensor<2xf64>)").is_none());
    }
}
