//! Loading a PJRT plugin: dlopen, `GetPjrtApi`, the API version check, `PJRT_Plugin_Initialize`.
//!
//! Plugins are kept in a process-wide registry keyed by their canonical path and are never
//! unloaded: XLA plugins start threads and register global state that does not survive
//! `dlclose`. Loading the same path twice returns the same [`Plugin`], so
//! `PJRT_Plugin_Initialize` runs exactly once per plugin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use once_cell::sync::Lazy;

use super::api::{pjrt_call, Api, Args};
use super::client::Client;
use super::sys;
use crate::error::{Error, Result};

/// A value in PJRT's named-value lists (client create options, plugin attributes).
#[derive(Clone, Debug, PartialEq)]
pub enum NamedValue {
    /// A string.
    Str(String),
    /// A 64-bit integer.
    I64(i64),
    /// A list of 64-bit integers.
    I64List(Vec<i64>),
    /// A 32-bit float.
    F32(f32),
    /// A boolean.
    Bool(bool),
}

/// Owns the memory behind a `[PJRT_NamedValue]` array for the duration of a call.
pub(crate) struct NamedValues {
    names: Vec<Vec<u8>>,
    strings: Vec<Vec<u8>>,
    lists: Vec<Vec<i64>>,
    pub(crate) raw: Vec<sys::PJRT_NamedValue>,
}

impl NamedValues {
    pub(crate) fn new(options: &[(&str, NamedValue)]) -> NamedValues {
        let mut nv = NamedValues {
            names: Vec::new(),
            strings: Vec::new(),
            lists: Vec::new(),
            raw: Vec::new(),
        };
        for (name, value) in options {
            nv.names.push(name.as_bytes().to_vec());
            let mut r = sys::PJRT_NamedValue::new();
            let n = nv.names.last().expect("just pushed");
            r.name = n.as_ptr().cast();
            r.name_size = n.len();
            use sys::PJRT_NamedValue_Type as T;
            let value_of = &mut r.__bindgen_anon_1;
            (r.type_, r.value_size) = match value {
                NamedValue::Str(s) => {
                    nv.strings.push(s.as_bytes().to_vec());
                    let s = nv.strings.last().expect("just pushed");
                    value_of.string_value = s.as_ptr().cast();
                    (T::PJRT_NamedValue_kString, s.len())
                }
                NamedValue::I64(v) => {
                    value_of.int64_value = *v;
                    (T::PJRT_NamedValue_kInt64, 1)
                }
                NamedValue::I64List(v) => {
                    nv.lists.push(v.clone());
                    let l = nv.lists.last().expect("just pushed");
                    value_of.int64_array_value = l.as_ptr();
                    (T::PJRT_NamedValue_kInt64List, l.len())
                }
                NamedValue::F32(v) => {
                    value_of.float_value = *v;
                    (T::PJRT_NamedValue_kFloat, 1)
                }
                NamedValue::Bool(v) => {
                    value_of.bool_value = *v;
                    (T::PJRT_NamedValue_kBool, 1)
                }
            };
            nv.raw.push(r);
        }
        nv
    }
}

/// Reads a plugin-owned named-value array into owned Rust values.
///
/// # Safety
/// `ptr[..len]` must be valid `PJRT_NamedValue`s whose payloads are valid for reads.
unsafe fn read_named_values(ptr: *const sys::PJRT_NamedValue, len: usize) -> Vec<(String, NamedValue)> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let items = unsafe { std::slice::from_raw_parts(ptr, len) };
    items
        .iter()
        .map(|r| {
            // SAFETY: name/name_size describe a byte string owned by the plugin.
            let name = unsafe { bytes(r.name.cast(), r.name_size) };
            let name = String::from_utf8_lossy(name).into_owned();
            // SAFETY: the union member read matches `type_`, as PJRT specifies.
            let value = unsafe {
                match r.type_ {
                    sys::PJRT_NamedValue_Type::PJRT_NamedValue_kString => NamedValue::Str(
                        String::from_utf8_lossy(bytes(r.__bindgen_anon_1.string_value.cast(), r.value_size))
                            .into_owned(),
                    ),
                    sys::PJRT_NamedValue_Type::PJRT_NamedValue_kInt64 => {
                        NamedValue::I64(r.__bindgen_anon_1.int64_value)
                    }
                    sys::PJRT_NamedValue_Type::PJRT_NamedValue_kInt64List => {
                        let p = r.__bindgen_anon_1.int64_array_value;
                        NamedValue::I64List(if p.is_null() {
                            Vec::new()
                        } else {
                            std::slice::from_raw_parts(p, r.value_size).to_vec()
                        })
                    }
                    sys::PJRT_NamedValue_Type::PJRT_NamedValue_kFloat => {
                        NamedValue::F32(r.__bindgen_anon_1.float_value)
                    }
                    sys::PJRT_NamedValue_Type::PJRT_NamedValue_kBool => NamedValue::Bool(r.__bindgen_anon_1.bool_value),
                    other => NamedValue::Str(format!("<unknown named value type {}>", other.0)),
                }
            };
            (name, value)
        })
        .collect()
}

/// A byte slice from a pointer/length pair; empty for null.
///
/// # Safety
/// When non-null, `ptr[..len]` must be valid for reads for the returned lifetime.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// A loaded PJRT plugin. Lives for the rest of the process.
pub struct Plugin {
    pub(crate) api: Api,
    path: PathBuf,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("api_version", &self.api_version())
            .finish()
    }
}

static REGISTRY: Lazy<Mutex<HashMap<PathBuf, &'static Plugin>>> = Lazy::new(|| Mutex::new(HashMap::new()));

type GetPjrtApiFn = unsafe extern "C" fn() -> *const sys::PJRT_Api;

impl Plugin {
    /// Loads the plugin at `path` (once per process; later calls return the same plugin).
    ///
    /// # Errors
    /// [`Error::PluginLoad`] when the file cannot be opened or lacks `GetPjrtApi`,
    /// [`Error::ApiVersion`] when its C API major version differs from the bindings', and
    /// [`Error::Pjrt`] when `PJRT_Plugin_Initialize` fails.
    pub fn load(path: &Path) -> Result<&'static Plugin> {
        let key = path.canonicalize().map_err(|e| Error::PluginLoad {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = registry.get(&key) {
            return Ok(p);
        }
        let load_err = |reason: String| Error::PluginLoad {
            path: key.clone(),
            reason,
        };
        // A truncated library is mapped past its end by the loader and dies of SIGBUS.
        check_elf(&key).map_err(load_err)?;
        // SAFETY: loading a shared library runs its initialisers. PJRT plugins are designed to
        // be dlopen'ed by a host process; this is the documented way to use them.
        let lib = unsafe { libloading::Library::new(&key) }.map_err(|e| load_err(e.to_string()))?;
        // SAFETY: `GetPjrtApi` has this signature in every PJRT plugin (pjrt_c_api.h).
        let get: libloading::Symbol<'_, GetPjrtApiFn> =
            unsafe { lib.get(b"GetPjrtApi\0") }.map_err(|e| load_err(format!("no GetPjrtApi symbol: {e}")))?;
        // SAFETY: calling the plugin's entry point; it returns a pointer to a static table.
        let raw = unsafe { get() };
        // SAFETY: the table is static inside the library, which is never unloaded (leaked below).
        let api = unsafe { Api::from_raw(raw) }.ok_or_else(|| load_err("GetPjrtApi returned null".into()))?;
        let (major, minor) = api.version();
        if major != sys::PJRT_API_MAJOR as i32 {
            return Err(Error::ApiVersion {
                path: key,
                found_major: major,
                found_minor: minor,
                expected_major: sys::PJRT_API_MAJOR as i32,
                expected_minor: sys::PJRT_API_MINOR as i32,
            });
        }
        // Never unload: see the module docs.
        std::mem::forget(lib);
        let mut args = sys::PJRT_Plugin_Initialize_Args::new();
        pjrt_call!(api, PJRT_Plugin_Initialize, &mut args, || format!(
            "initialising plugin {}",
            key.display()
        ))?;
        let plugin: &'static Plugin = Box::leak(Box::new(Plugin { api, path: key.clone() }));
        registry.insert(key, plugin);
        Ok(plugin)
    }

    /// The canonical path the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(major, minor)` PJRT C API version the plugin implements.
    pub fn api_version(&self) -> (i32, i32) {
        self.api.version()
    }

    /// The plugin's attributes (for example `xla_version`, `stablehlo_current_version`).
    ///
    /// # Errors
    /// [`Error::Pjrt`] when the call fails.
    pub fn attributes(&self) -> Result<Vec<(String, NamedValue)>> {
        let mut a = sys::PJRT_Plugin_Attributes_Args::new();
        pjrt_call!(self.api, PJRT_Plugin_Attributes, &mut a, || "reading plugin attributes"
            .into())?;
        // SAFETY: the plugin owns the array for its lifetime (the process).
        Ok(unsafe { read_named_values(a.attributes, a.num_attributes) })
    }

    /// Creates a client with the given create options (named values such as a GPU plugin's
    /// `memory_fraction` or `preallocate`; the CPU plugin needs none).
    ///
    /// # Errors
    /// [`Error::Pjrt`] when the plugin refuses to create a client.
    pub fn create_client(&'static self, options: &[(&str, NamedValue)]) -> Result<Client> {
        Client::create(self, options)
    }
}

/// Reads a plugin-returned pointer/length string into a `String` (lossy UTF-8).
///
/// # Safety
/// When non-null, `ptr[..len]` must be valid for reads.
pub(crate) unsafe fn string_from(ptr: *const std::ffi::c_char, len: usize) -> String {
    // SAFETY: guaranteed by the caller.
    String::from_utf8_lossy(unsafe { bytes(ptr.cast(), len) }).into_owned()
}

/// Checks, before `dlopen`, that `path` is a 64-bit little-endian ELF shared object whose
/// program and section header tables and every loadable segment lie inside the file: a
/// truncated library would otherwise be mapped past its end and the process killed by SIGBUS.
/// (A library damaged inside its segments cannot be told from a good one here; the cached
/// plugin's hash is checked for that.)
pub fn check_elf(path: &Path) -> std::result::Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut h = [0u8; 64];
    f.read_exact(&mut h)
        .map_err(|_| format!("not a shared library: {len} bytes, shorter than an ELF header"))?;
    if &h[..4] != b"\x7fELF" {
        return Err("not a shared library (no ELF header)".into());
    }
    if h[4] != 2 || h[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |b: &[u8], o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let (phoff, shoff) = (u64_at(&h, 32), u64_at(&h, 40));
    let (phentsize, phnum, shentsize, shnum) = (u16_at(&h, 54), u16_at(&h, 56), u16_at(&h, 58), u16_at(&h, 60));
    let truncated = |what: &str, end: u64| format!("truncated: {what} ends at byte {end} but the file has {len}");
    let table_end = |off: u64, size: u64, n: u64| off.checked_add(size.checked_mul(n)?);
    match table_end(phoff, phentsize, phnum) {
        Some(end) if end <= len => {}
        end => return Err(truncated("the program header table", end.unwrap_or(u64::MAX))),
    }
    if shnum > 0 {
        match table_end(shoff, shentsize, shnum) {
            Some(end) if end <= len => {}
            end => return Err(truncated("the section header table", end.unwrap_or(u64::MAX))),
        }
    }
    if phentsize < 56 {
        return Err(format!("program headers of {phentsize} bytes (ELF64 has 56)"));
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    f.seek(SeekFrom::Start(phoff)).map_err(|e| e.to_string())?;
    f.read_exact(&mut table).map_err(|e| e.to_string())?;
    for ph in table.chunks_exact(phentsize as usize) {
        const PT_LOAD: u32 = 1;
        if u32::from_le_bytes(ph[..4].try_into().expect("4 bytes")) != PT_LOAD {
            continue;
        }
        let (offset, filesz) = (u64_at(ph, 8), u64_at(ph, 32));
        match offset.checked_add(filesz) {
            Some(end) if end <= len => {}
            end => return Err(truncated("a loadable segment", end.unwrap_or(u64::MAX))),
        }
    }
    Ok(())
}
