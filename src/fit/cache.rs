//! Compile once per shape: the executable cache, in memory and on disk.
//!
//! **Key.** sha256 over the emitted program text, the encoded compile options, and the
//! plugin's identity (platform name and version, C API version, `XLA_FLAGS`, and the plugin file's sha256
//! for the pinned plugin or its canonical path, size and modification time for a plugin given
//! with `NLSQ_PJRT_PLUGIN`). Programs are deterministic, so two models that trace to the same
//! program share an entry, and anything that changes the program changes the key. The dtype is
//! part of the program text.
//!
//! **Memory.** A bounded LRU map of loaded executables shared by all threads; two threads
//! asking for the same missing key compile once (the second waits for the first).
//!
//! **Disk.** `NLSQ_CACHE_DIR/executables/<key>.nlsqx`: a header (magic, format version, the
//! key, the payload length, the payload's sha256) and the serialized executable. Entries are
//! written to a temporary file and renamed into place, so readers never see a partial entry
//! and several processes can share the folder. An entry that is truncated, corrupt, written
//! for another key, or rejected by the plugin is deleted and recompiled — never a crash, never
//! a wrong program: the checksum is verified before any byte reaches PJRT. The folder is kept
//! under a size bound (`NLSQ_CACHE_MAX_BYTES`, default 1 GiB) by deleting the least recently
//! used entries (a hit refreshes the entry's modification time). `NLSQ_DISK_CACHE=0` turns the
//! disk cache off.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use once_cell::sync::{Lazy, OnceCell};
use sha2::{Digest, Sha256};

mod compact;

pub use compact::cpu_envelope_is_well_formed;

use super::result::ExecutableSource;
use crate::error::Result;
use crate::pjrt::{Client, CompileOptions, LoadedExecutable};

const MAGIC: &[u8; 8] = b"NLSQXC01";
const HEADER_LEN: usize = 8 + 32 + 8 + 32;
/// Default bound of the disk cache.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default number of executables kept loaded in memory.
pub const DEFAULT_MEMORY_ENTRIES: usize = 64;

/// A cache key: sha256 of everything that determines the executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// Lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Identity of the plugin behind a client, as bytes for the key.
fn plugin_identity(client: &Client) -> Vec<u8> {
    let plugin = client.plugin();
    let (major, minor) = plugin.api_version();
    // XLA_FLAGS change the compiled code (the plugin reads them when it starts).
    let flags = crate::settings::xla_flags().unwrap_or_default();
    let mut id = format!(
        "{}\n{}\n{major}.{minor}\nXLA_FLAGS={flags}\n",
        client.platform_name(),
        client.platform_version()
    );
    match crate::runtime::plugin_location()
        .ok()
        .and_then(|p| p.sha256.filter(|_| p.plugin == plugin.path()))
    {
        Some(sha) => id.push_str(&sha),
        None => {
            let meta = fs::metadata(plugin.path()).ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
            id.push_str(&format!(
                "{}\n{:?}\n{:?}",
                plugin.path().display(),
                meta.map(|m| m.len()),
                mtime
            ));
        }
    }
    id.into_bytes()
}

/// The key of `program` compiled with `options` on `client`'s plugin.
pub fn cache_key(client: &Client, program: &str, options: &CompileOptions) -> CacheKey {
    static IDENTITY: OnceCell<Vec<u8>> = OnceCell::new();
    let identity = IDENTITY.get_or_init(|| plugin_identity(client));
    let mut h = Sha256::new();
    for part in [identity.as_slice(), &options.encode(), program.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    CacheKey(h.finalize().into())
}

/// Settings of the cache, read from the environment once.
#[derive(Clone, Debug)]
struct Settings {
    dir: Option<PathBuf>,
    max_bytes: u64,
}

fn settings() -> &'static Settings {
    static S: Lazy<Settings> = Lazy::new(|| {
        let dir = if crate::settings::disk_cache() {
            crate::settings::cache_root().map(|r| r.join("executables"))
        } else {
            None
        };
        let max_bytes = crate::settings::cache_max_bytes().unwrap_or(DEFAULT_MAX_BYTES);
        Settings { dir, max_bytes }
    });
    &S
}

/// A loaded executable and how it was obtained.
#[derive(Clone, Debug)]
pub struct CachedExecutable {
    /// The executable.
    pub executable: Arc<LoadedExecutable>,
    /// Compiled now, taken from memory, or loaded from disk.
    pub source: ExecutableSource,
    /// Time to compile or load it (zero-ish for a memory hit).
    pub load_time: Duration,
    /// The key.
    pub key: CacheKey,
}

type Slot = Arc<OnceCell<Arc<LoadedExecutable>>>;

/// A slot per program and client: an executable runs on the client that loaded it, and the batch
/// fitter's per-core clients (`runtime::cpu_workers`) each need their own.
type SlotKey = (CacheKey, usize);

/// The process-wide executable cache.
pub struct ExecutableCache {
    slots: Mutex<HashMap<SlotKey, (Slot, u64)>>,
    tick: std::sync::atomic::AtomicU64,
    capacity: usize,
    dir: Option<PathBuf>,
    max_bytes: u64,
}

impl ExecutableCache {
    /// A cache with an explicit disk folder (`None`: memory only) and bounds.
    pub fn new(dir: Option<PathBuf>, max_bytes: u64, capacity: usize) -> ExecutableCache {
        ExecutableCache {
            slots: Mutex::new(HashMap::new()),
            tick: Default::default(),
            capacity: capacity.max(1),
            dir,
            max_bytes,
        }
    }

    /// The process-wide cache configured from the environment.
    pub fn global() -> &'static ExecutableCache {
        static C: Lazy<ExecutableCache> = Lazy::new(|| {
            let s = settings();
            ExecutableCache::new(s.dir.clone(), s.max_bytes, DEFAULT_MEMORY_ENTRIES)
        });
        &C
    }

    /// The disk folder, if the disk cache is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Number of executables loaded in memory.
    pub fn memory_len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(s, _)| s.get().is_some())
            .count()
    }

    /// Drops every executable held in memory (the disk entries stay).
    pub fn clear_memory(&self) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The executable of `program`: from memory, else from disk, else compiled (and stored).
    ///
    /// # Errors
    /// Compilation errors. Disk problems are never errors: a bad entry is recompiled, and a
    /// failed write only costs the next process a compile.
    pub fn get_or_compile(&self, client: &Client, program: &str) -> Result<CachedExecutable> {
        self.get_or_compile_with(client, program, &CompileOptions::default())
    }

    /// Like [`ExecutableCache::get_or_compile`], with these compile options (part of the key).
    ///
    /// # Errors
    /// As [`ExecutableCache::get_or_compile`].
    pub fn get_or_compile_with(
        &self,
        client: &Client,
        program: &str,
        options: &CompileOptions,
    ) -> Result<CachedExecutable> {
        self.fetch(client, program, options, true)?
            .ok_or_else(|| crate::Error::InvalidArgument {
                what: "executable cache",
                reason: "no executable was compiled".into(),
            })
    }

    /// Like [`ExecutableCache::get_or_compile_with`], but never compiles: `None` when the
    /// program is neither in memory (for this or another client) nor on disk.
    ///
    /// # Errors
    /// Never for a missing program; as [`ExecutableCache::get_or_compile`] otherwise.
    pub fn get_or_load_with(
        &self,
        client: &Client,
        program: &str,
        options: &CompileOptions,
    ) -> Result<Option<CachedExecutable>> {
        self.fetch(client, program, options, false)
    }

    fn fetch(
        &self,
        client: &Client,
        program: &str,
        options: &CompileOptions,
        compile: bool,
    ) -> Result<Option<CachedExecutable>> {
        let t0 = Instant::now();
        let options = *options;
        let key = cache_key(client, program, &options);
        let slot_key = (key, client.id());
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let tick = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let slot = slots
                .entry(slot_key)
                .or_insert_with(|| (Arc::new(OnceCell::new()), tick));
            slot.1 = tick;
            let s = slot.0.clone();
            self.evict_memory(&mut slots);
            s
        };
        if let Some(exe) = slot.get() {
            return Ok(Some(CachedExecutable {
                executable: exe.clone(),
                source: ExecutableSource::Memory,
                load_time: t0.elapsed(),
                key,
            }));
        }
        let mut source = ExecutableSource::Memory;
        // `Err(None)`: not found and not compiled.
        let result = slot.get_or_try_init(|| -> std::result::Result<Arc<LoadedExecutable>, Option<crate::Error>> {
            if let Some(exe) = self.load_from_sibling(client, &key) {
                return Ok(Arc::new(exe));
            }
            if let Some(exe) = self.load_from_disk(client, &key) {
                source = ExecutableSource::Disk;
                return Ok(Arc::new(exe));
            }
            if !compile {
                return Err(None);
            }
            let mut exe = client.compile_with(program, &options)?;
            if crate::runtime::compacts_executables() {
                // The executable every later process loads, run from the start (see
                // `compact::compacted`).
                exe = compact::compacted(&exe).unwrap_or(exe);
            }
            source = ExecutableSource::Compiled;
            self.store_to_disk(&key, &exe);
            Ok(Arc::new(exe))
        });
        match result {
            Ok(exe) => Ok(Some(CachedExecutable {
                executable: exe.clone(),
                source,
                load_time: t0.elapsed(),
                key,
            })),
            Err(e) => {
                // Do not keep a failed slot: a later call may succeed (e.g. after a fix).
                self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&slot_key);
                e.map_or(Ok(None), Err)
            }
        }
    }

    fn evict_memory(&self, slots: &mut HashMap<SlotKey, (Slot, u64)>) {
        while slots.len() > self.capacity {
            let Some(oldest) = slots.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) else {
                break;
            };
            slots.remove(&oldest);
        }
    }

    /// Path of the entry of `key`.
    pub fn entry_path(&self, key: &CacheKey) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{}.nlsqx", key.hex())))
    }

    /// The same program already loaded for another client of this process, serialized and
    /// loaded again for `client` (a load, not a compile, also when the disk cache is off).
    fn load_from_sibling(&self, client: &Client, key: &CacheKey) -> Option<LoadedExecutable> {
        let sibling = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|((k, id), (s, _))| k == key && *id != client.id() && s.get().is_some())
            .and_then(|(_, (s, _))| s.get().cloned())?;
        client.deserialize(&sibling.serialize().ok()?).ok()
    }

    fn load_from_disk(&self, client: &Client, key: &CacheKey) -> Option<LoadedExecutable> {
        let path = self.entry_path(key)?;
        let bytes = match read_entry(&path, self.max_bytes) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            // Not a regular file, or longer than any entry may be: never ours, removed.
            Err(()) => {
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        // With the pinned CPU plugin, bytes that pass the checksum but not a structural check of
        // the HLO module (damaged before they were written, or edited) never reach its loader.
        let sound = |payload: &[u8]| !crate::runtime::compacts_executables() || cpu_envelope_is_well_formed(payload);
        match decode_entry(&bytes, key).filter(|p| sound(p)) {
            Some(payload) => match client.deserialize(payload) {
                Ok(exe) => {
                    // Refresh the entry for LRU eviction.
                    if let Ok(f) = fs::File::options().write(true).open(&path) {
                        let _ = f.set_modified(SystemTime::now());
                    }
                    Some(exe)
                }
                Err(_) => {
                    let _ = fs::remove_file(&path);
                    None
                }
            },
            None => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    fn store_to_disk(&self, key: &CacheKey, exe: &LoadedExecutable) {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.entry_path(key)) else {
            return;
        };
        let Ok(payload) = exe.serialize() else { return };
        if let Err(e) = fs::create_dir_all(dir) {
            return warn_unwritable(dir, &e);
        }
        let entry = encode_entry(key, &payload);
        // A file-size limit (`ulimit -f`) below the entry would end the process with SIGXFSZ
        // part way through the write, after the fit ran: the entry is skipped instead.
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Fsize).current {
            if entry.len() as u64 > limit {
                let e = std::io::Error::other(format!(
                    "an entry of {} bytes is over the process's file-size limit of {limit} bytes",
                    entry.len()
                ));
                return warn_unwritable(dir, &e);
            }
        }
        let tmp = dir.join(format!(
            ".{}.{}.{:?}.tmp",
            key.hex(),
            std::process::id(),
            std::thread::current().id()
        ));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&entry)?;
                f.sync_all()
            })
            .and_then(|_| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return warn_unwritable(dir, &e);
        }
        self.enforce_size_bound();
    }

    /// Deletes least recently used entries until the folder is within the size bound.
    pub fn enforce_size_bound(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(rd) = fs::read_dir(dir) else { return };
        let files: Vec<fs::DirEntry> = rd.filter_map(|e| e.ok()).collect();
        // Temporary files of writers that died (killed, disk full) more than an hour ago.
        for e in &files {
            let stale = e.path().extension().is_some_and(|x| x == "tmp")
                && e.metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
            if stale {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = files
            .into_iter()
            .filter(|e| e.path().extension().is_some_and(|x| x == "nlsqx"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}

/// Says once per process, on stderr, that the disk cache cannot be written: otherwise every new
/// process compiles again (seconds) without a word. The fit itself goes on.
fn warn_unwritable(dir: &Path, e: &std::io::Error) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "warning: nlsq cannot write its executable cache in {} ({e}): every new process compiles \
             again; set NLSQ_CACHE_DIR to a writable folder, or NLSQ_DISK_CACHE=0 to silence this",
            dir.display()
        );
    }
}

/// The bytes of the entry at `path`: `Ok(None)` when there is none (or it cannot be read),
/// `Err(())` when the path is not a regular file (a named pipe would block the reader, a link
/// to a device would be read without end) or is longer than `max_bytes`. Opened without
/// blocking and checked again on the open file, so a pipe swapped in between cannot block
/// either; at most the header's payload length is read.
fn read_entry(path: &Path, max_bytes: u64) -> std::result::Result<Option<Vec<u8>>, ()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(None);
    };
    if !meta.file_type().is_file() || meta.len() > max_bytes {
        return Err(());
    }
    let Ok(file) = fs::File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path) else {
        return Ok(None);
    };
    match file.metadata() {
        Ok(m) if m.file_type().is_file() && m.len() <= max_bytes => {}
        Ok(_) => return Err(()),
        Err(_) => return Ok(None),
    }
    let mut bytes = Vec::new();
    match file.take(meta.len().min(max_bytes)).read_to_end(&mut bytes) {
        Ok(_) => Ok(Some(bytes)),
        Err(_) => Ok(None),
    }
}

fn encode_entry(key: &CacheKey, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of a well-formed entry for `key`, or `None`.
fn decode_entry<'a>(bytes: &'a [u8], key: &CacheKey) -> Option<&'a [u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC || bytes[8..40] != key.0 {
        return None;
    }
    let len = u64::from_le_bytes(bytes[40..48].try_into().ok()?) as usize;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len || Sha256::digest(payload).as_slice() != &bytes[48..80] {
        return None;
    }
    Some(payload)
}

/// Compiles or fetches `program` through the global cache (for the crate's unit tests, which
/// run on the default device).
#[cfg(test)]
pub(crate) fn executable(program: &str) -> Result<CachedExecutable> {
    let client = crate::runtime::client()?;
    ExecutableCache::global().get_or_compile(&client, program)
}

/// Compiles or fetches `program` through the global cache, compiled portable: it runs on
/// whichever device of the default client an execution leases (`pjrt::Client::lease_device`), so that fits on several threads use
/// the client's devices side by side.
pub(crate) fn portable_executable(program: &str) -> Result<CachedExecutable> {
    let client = crate::runtime::client()?;
    let options = CompileOptions {
        portable: true,
        ..Default::default()
    };
    ExecutableCache::global().get_or_compile_with(&client, program, &options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_reject_damage() {
        let key = CacheKey([7; 32]);
        let payload = b"serialized executable bytes".to_vec();
        let e = encode_entry(&key, &payload);
        assert_eq!(decode_entry(&e, &key), Some(payload.as_slice()));
        assert_eq!(decode_entry(&e, &CacheKey([8; 32])), None, "foreign key");
        assert_eq!(decode_entry(&e[..e.len() - 1], &key), None, "truncated");
        let mut flipped = e.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x10;
        assert_eq!(decode_entry(&flipped, &key), None, "bit flip");
        assert_eq!(decode_entry(b"short", &key), None);
    }
}
