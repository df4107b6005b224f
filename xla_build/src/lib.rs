//! Provisioning of the PJRT plugin that nlsq runs its programs on.
//!
//! nlsq drives XLA through the PJRT C API, so all it needs at run time is one PJRT plugin
//! shared object. This crate finds it, in this order:
//!
//! 1. `NLSQ_PJRT_PLUGIN`: a path to any PJRT plugin (CPU, GPU, TPU), used as is.
//! 2. The per-user cache: `NLSQ_CACHE_DIR`, else `$XDG_CACHE_HOME/nlsq`, else
//!    `~/.cache/nlsq`. The pinned plugin lives in `pjrt/<plugin sha256>/` there, next to a
//!    `VERIFIED` marker written only after both hashes were checked.
//! 3. A fetch of the pinned wheel (`xla-cpu-pjrt==0.0.1`, the official OpenXLA CPU plugin on
//!    PyPI) with `python3 -m pip download`, verification of the wheel's sha256, extraction of
//!    the plugin with the `zip` crate while hashing it, verification of the plugin's sha256,
//!    and an atomic rename of the finished folder into the cache. Two processes provisioning
//!    at once both succeed: each extracts into its own temporary folder and the loser of the
//!    rename uses the winner's folder. `NLSQ_PJRT_WHEEL` names a wheel file fetched before
//!    (offline builds): it is verified and installed the same way, and pip is not run.
//!    `NLSQ_OFFLINE=1` forbids fetching (a `NLSQ_PJRT_WHEEL` is still installed).
//!
//! The full sha256 of the 259 MB plugin is checked once, when it is installed; a cache hit
//! checks the marker and the file size, which costs microseconds instead of a second.
//!
//! Every failure is an [`Error`] that says what happened and what to set. The crate is used by
//! nlsq's build script (so `cargo build` on a fresh machine provisions the plugin) and by the
//! library at run time (so a plugin deleted after the build is provisioned again).
//!
//! # References
//! - PJRT C API: `xla/pjrt/c/pjrt_c_api.h` in OpenXLA.
//! - Wheel format: PEP 427 (a wheel is a zip archive).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A pinned plugin distribution: which wheel to fetch and what it must contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// PyPI package name.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// File name of the wheel that pip downloads.
    pub wheel_file: &'static str,
    /// sha256 of the wheel, lowercase hex.
    pub wheel_sha256: &'static str,
    /// Path of the plugin inside the wheel.
    pub plugin_member: &'static str,
    /// sha256 of the plugin, lowercase hex.
    pub plugin_sha256: &'static str,
    /// Path of `pjrt_c_api.h` inside the wheel (also extracted, for regenerating bindings).
    pub header_member: &'static str,
    /// sha256 of the header, lowercase hex.
    pub header_sha256: &'static str,
}

/// The OpenXLA CPU plugin nlsq is built and tested against (PJRT C API 0.81).
pub const CPU_PLUGIN: Pin = Pin {
    package: "xla-cpu-pjrt",
    version: "0.0.1",
    wheel_file: "xla_cpu_pjrt-0.0.1-py3-none-manylinux_2_27_x86_64.whl",
    wheel_sha256: "55837b6b7b47daa717f2d9a5a03563ea0ceaa338d06a81a1e2d3f060d960decc",
    plugin_member: "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so",
    plugin_sha256: "88c3f28c5900f48ad4a82cab9e79bba9537809743395e341485f8794268820dc",
    header_member: "xla_plugins/xla_cpu_pjrt/include/pjrt_c_api.h",
    header_sha256: "c85bb95cb1743c2a353a555b3ab35f065e5f17007c7f182ad68d23754950235c",
};

/// File name of the plugin inside a cache entry.
pub const PLUGIN_FILE: &str = "pjrt_plugin.so";
/// File name of the C header inside a cache entry.
pub const HEADER_FILE: &str = "pjrt_c_api.h";
const MARKER_FILE: &str = "VERIFIED";

/// Environment variable: path to a PJRT plugin used as is.
pub const ENV_PLUGIN: &str = "NLSQ_PJRT_PLUGIN";
/// Environment variable: the cache directory.
pub const ENV_CACHE_DIR: &str = "NLSQ_CACHE_DIR";
/// Environment variable: `1` forbids fetching.
pub const ENV_OFFLINE: &str = "NLSQ_OFFLINE";
/// Environment variable: path of the pinned wheel, fetched before; installed (after the same
/// checks as a download) instead of running pip when the cache lacks the plugin.
pub const ENV_WHEEL: &str = "NLSQ_PJRT_WHEEL";
/// Environment variable: the Python interpreter used for `pip download` (default `python3`).
pub const ENV_PYTHON: &str = "NLSQ_PYTHON";
/// Environment variable: seconds `pip download` may take before it is stopped (default 600).
pub const ENV_PIP_TIMEOUT: &str = "NLSQ_PIP_TIMEOUT";
/// Default of [`ENV_PIP_TIMEOUT`]: ten minutes, time for the 63 MB wheel on a slow line.
pub const DEFAULT_PIP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// What can go wrong while provisioning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `NLSQ_PJRT_PLUGIN` names a file that does not exist.
    #[error("NLSQ_PJRT_PLUGIN={path:?} does not exist (point it at a PJRT plugin .so, or unset it to use the pinned CPU plugin)")]
    OverrideMissing {
        /// The path given.
        path: PathBuf,
    },
    /// No cache directory could be determined.
    #[error("cannot determine a cache directory: HOME and XDG_CACHE_HOME are unset (set NLSQ_CACHE_DIR)")]
    NoCacheDir,
    /// Fetching is forbidden and nothing is cached.
    #[error(
        "NLSQ_OFFLINE=1 forbids fetching the PJRT plugin and no verified plugin is cached in {cache:?} \
         (unset NLSQ_OFFLINE to fetch {package}=={version} with pip, set NLSQ_PJRT_WHEEL to a downloaded \
         {wheel_file}, set NLSQ_CACHE_DIR to a cache that has it, or set NLSQ_PJRT_PLUGIN to a PJRT plugin .so)"
    )]
    Offline {
        /// The cache folder that was searched.
        cache: PathBuf,
        /// The pinned package.
        package: &'static str,
        /// The pinned version.
        version: &'static str,
        /// The pinned wheel's file name.
        wheel_file: &'static str,
    },
    /// `NLSQ_PJRT_WHEEL` names no file.
    #[error(
        "NLSQ_PJRT_WHEEL={path:?} does not exist (point it at {wheel_file}, or unset it to fetch the wheel with pip)"
    )]
    WheelMissing {
        /// The path given.
        path: PathBuf,
        /// The pinned wheel's file name.
        wheel_file: &'static str,
    },
    /// The wheel `NLSQ_PJRT_WHEEL` names is not the pinned one.
    #[error(
        "NLSQ_PJRT_WHEEL={path:?} is not the pinned wheel: its sha256 is {actual}, expected {expected} \
         ({wheel_file}; fetch it with `pip download --no-deps --only-binary=:all: {package}=={version}`, \
         or unset NLSQ_PJRT_WHEEL)"
    )]
    WheelMismatch {
        /// The wheel given.
        path: PathBuf,
        /// The pinned wheel's file name.
        wheel_file: &'static str,
        /// The pinned package.
        package: &'static str,
        /// The pinned version.
        version: &'static str,
        /// The pinned hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// The Python interpreter could not be started.
    #[error(
        "cannot run {python:?} to fetch the PJRT plugin: {source} (install python3 with pip, set NLSQ_PYTHON \
         to an interpreter that has pip, or set NLSQ_PJRT_PLUGIN to a PJRT plugin .so)"
    )]
    PythonMissing {
        /// The interpreter tried.
        python: OsString,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// `pip download` ran and failed.
    #[error(
        "`{command}` failed ({status}): {stderr} (check that PyPI is reachable and pip works, \
         or set NLSQ_PJRT_PLUGIN to a PJRT plugin .so)"
    )]
    PipFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A downloaded or extracted file does not have the pinned hash.
    #[error("sha256 of {what} {path:?} is {actual}, expected {expected} (the download is corrupt or not the pinned release; delete it and retry)")]
    HashMismatch {
        /// Which file (`wheel`, `plugin`, `header`).
        what: &'static str,
        /// Where it is.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// The wheel is not a readable zip archive, or lacks a member.
    #[error("wheel {path:?} is unusable: {reason} (delete it and retry, or set NLSQ_PJRT_PLUGIN)")]
    CorruptArchive {
        /// The wheel.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file-system operation failed (permissions, disk full, ...).
    #[error("{doing} {path:?}: {source} (set NLSQ_CACHE_DIR to a writable folder with 300 MB free)")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a provisioned plugin came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `NLSQ_PJRT_PLUGIN`.
    Override,
    /// A verified entry of the cache.
    Cache,
    /// Fetched, verified and installed into the cache just now.
    Fetched,
    /// Installed into the cache just now from the wheel `NLSQ_PJRT_WHEEL` names.
    Wheel,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Override => "NLSQ_PJRT_PLUGIN",
            Source::Cache => "cache",
            Source::Fetched => "fetched",
            Source::Wheel => "NLSQ_PJRT_WHEEL",
        })
    }
}

/// A plugin ready to be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// Path of the plugin shared object.
    pub plugin: PathBuf,
    /// Path of the C header, when the plugin came from the pinned wheel.
    pub header: Option<PathBuf>,
    /// sha256 of the plugin when known (always for the pinned plugin; not computed for overrides).
    pub sha256: Option<String>,
    /// Where it came from.
    pub source: Source,
}

/// Provisioning settings, normally read from the environment with [`Config::from_env`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A plugin to use as is (`NLSQ_PJRT_PLUGIN`).
    pub plugin_override: Option<PathBuf>,
    /// The cache root (`NLSQ_CACHE_DIR`, `$XDG_CACHE_HOME/nlsq` or `~/.cache/nlsq`).
    pub cache_root: PathBuf,
    /// A pre-fetched copy of the pinned wheel, installed instead of running pip when the cache
    /// lacks the plugin (`NLSQ_PJRT_WHEEL`).
    pub wheel: Option<PathBuf>,
    /// Fetching forbidden (`NLSQ_OFFLINE=1`).
    pub offline: bool,
    /// Interpreter for `pip download` (`NLSQ_PYTHON`, default `python3`).
    pub python: OsString,
    /// How long `pip download` may run before it is stopped and reported (`NLSQ_PIP_TIMEOUT`
    /// seconds, default [`DEFAULT_PIP_TIMEOUT`]): a pip that never exits must not hang the build
    /// or the first fit.
    pub pip_timeout: std::time::Duration,
}

impl Config {
    /// Reads the settings from the environment.
    ///
    /// # Errors
    /// [`Error::NoCacheDir`] when none of `NLSQ_CACHE_DIR`, `XDG_CACHE_HOME`, `HOME` is set.
    pub fn from_env() -> Result<Config> {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Ok(Config {
            plugin_override: nonempty(ENV_PLUGIN).map(PathBuf::from),
            cache_root: default_cache_root()?,
            wheel: nonempty(ENV_WHEEL).map(PathBuf::from),
            offline: nonempty(ENV_OFFLINE).is_some_and(|v| v != "0"),
            python: nonempty(ENV_PYTHON).unwrap_or_else(|| "python3".into()),
            pip_timeout: nonempty(ENV_PIP_TIMEOUT)
                .and_then(|v| v.to_str()?.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(std::time::Duration::from_secs_f64)
                .unwrap_or(DEFAULT_PIP_TIMEOUT),
        })
    }

    /// A configuration with the given cache root, online, no override, no wheel, `python3`.
    pub fn with_cache_root(cache_root: impl Into<PathBuf>) -> Config {
        Config {
            plugin_override: None,
            cache_root: cache_root.into(),
            wheel: None,
            offline: false,
            python: "python3".into(),
            pip_timeout: DEFAULT_PIP_TIMEOUT,
        }
    }
}

/// The cache root from the environment: `NLSQ_CACHE_DIR`, else `$XDG_CACHE_HOME/nlsq`, else
/// `$HOME/.cache/nlsq`.
///
/// # Errors
/// [`Error::NoCacheDir`] when none is set.
pub fn default_cache_root() -> Result<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = nonempty(ENV_CACHE_DIR) {
        return Ok(d);
    }
    if let Some(d) = nonempty("XDG_CACHE_HOME") {
        return Ok(d.join("nlsq"));
    }
    if let Some(h) = nonempty("HOME") {
        return Ok(h.join(".cache").join("nlsq"));
    }
    Err(Error::NoCacheDir)
}

/// The folder of a pin's cache entry under `cache_root`.
pub fn entry_dir(cache_root: &Path, pin: &Pin) -> PathBuf {
    cache_root.join("pjrt").join(pin.plugin_sha256)
}

/// Provisions the pinned CPU plugin (or the override) with settings from the environment.
///
/// # Errors
/// Any [`Error`]; each says what to set.
pub fn provision() -> Result<Provisioned> {
    provision_with(&Config::from_env()?, &CPU_PLUGIN)
}

/// Provisions `pin` following `cfg`: override, then cache, then the given wheel, then fetch.
///
/// # Errors
/// Any [`Error`]; each says what to set.
pub fn provision_with(cfg: &Config, pin: &Pin) -> Result<Provisioned> {
    if let Some(p) = &cfg.plugin_override {
        return use_override(p);
    }
    if let Some(hit) = find_cached(&cfg.cache_root, pin) {
        return Ok(hit);
    }
    if let Some(wheel) = &cfg.wheel {
        return install_local_wheel(wheel, &cfg.cache_root, pin);
    }
    if cfg.offline {
        return Err(Error::Offline {
            cache: entry_dir(&cfg.cache_root, pin),
            package: pin.package,
            version: pin.version,
            wheel_file: pin.wheel_file,
        });
    }
    fetch_and_install(cfg, pin)
}

/// Installs `pin` from a wheel fetched before (`NLSQ_PJRT_WHEEL`), without pip: its sha256 must
/// be the pinned one, and then it is installed like a download ([`install_wheel`]: the plugin's
/// and the header's hashes are checked too).
///
/// # Errors
/// [`Error::WheelMissing`], [`Error::WheelMismatch`] (both name the variable and what to do),
/// and what [`install_wheel`] returns.
pub fn install_local_wheel(wheel: &Path, cache_root: &Path, pin: &Pin) -> Result<Provisioned> {
    if !wheel.is_file() {
        return Err(Error::WheelMissing {
            path: wheel.to_path_buf(),
            wheel_file: pin.wheel_file,
        });
    }
    let actual = sha256_file(wheel)?;
    if actual != pin.wheel_sha256 {
        return Err(Error::WheelMismatch {
            path: wheel.to_path_buf(),
            wheel_file: pin.wheel_file,
            package: pin.package,
            version: pin.version,
            expected: pin.wheel_sha256.to_string(),
            actual,
        });
    }
    install_checked_wheel(wheel, cache_root, pin).map(|mut p| {
        p.source = Source::Wheel;
        p
    })
}

/// Checks that an override path exists.
///
/// # Errors
/// [`Error::OverrideMissing`].
pub fn use_override(path: &Path) -> Result<Provisioned> {
    if !path.is_file() {
        return Err(Error::OverrideMissing {
            path: path.to_path_buf(),
        });
    }
    Ok(Provisioned {
        plugin: path.to_path_buf(),
        header: None,
        sha256: None,
        source: Source::Override,
    })
}

/// Looks for a verified entry of `pin` in the cache. `None` when absent or incomplete.
pub fn find_cached(cache_root: &Path, pin: &Pin) -> Option<Provisioned> {
    let dir = entry_dir(cache_root, pin);
    check_entry(&dir, pin).then(|| Provisioned {
        plugin: dir.join(PLUGIN_FILE),
        header: Some(dir.join(HEADER_FILE)),
        sha256: Some(pin.plugin_sha256.to_string()),
        source: Source::Cache,
    })
}

/// An entry is usable when its marker names the pinned hash, the plugin has the recorded size
/// and modification time, and the header is there. When the time differs (the file was written
/// since it was verified: damaged in place, or copied) the plugin is hashed again; a match
/// records the new time, a mismatch makes the entry unusable, so that it is fetched again
/// instead of crashing every process that loads it.
fn check_entry(dir: &Path, pin: &Pin) -> bool {
    let Ok(marker) = fs::read_to_string(dir.join(MARKER_FILE)) else {
        return false;
    };
    let mut fields = marker.split_whitespace();
    let (Some(hash), Some(size)) = (fields.next(), fields.next()) else {
        return false;
    };
    let Ok(size) = size.parse::<u64>() else { return false };
    let recorded_mtime = fields.next().and_then(|t| t.parse::<u128>().ok());
    let plugin = dir.join(PLUGIN_FILE);
    let Ok(meta) = fs::metadata(&plugin) else { return false };
    if hash != pin.plugin_sha256 || meta.len() != size || !dir.join(HEADER_FILE).is_file() {
        return false;
    }
    let mtime = mtime_ns(&meta);
    if recorded_mtime.is_some() && recorded_mtime == mtime {
        return true;
    }
    if !sha256_file(&plugin).is_ok_and(|h| h == pin.plugin_sha256) {
        return false;
    }
    let _ = write_marker(&dir.join(MARKER_FILE), pin, size, mtime);
    true
}

/// Modification time in nanoseconds since the epoch.
fn mtime_ns(meta: &fs::Metadata) -> Option<u128> {
    meta.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos())
}

/// `hash size [mtime_ns]`: what the entry's plugin was verified to be.
fn write_marker(path: &Path, pin: &Pin, size: u64, mtime: Option<u128>) -> io::Result<()> {
    let mtime = mtime.map(|t| format!(" {t}")).unwrap_or_default();
    fs::write(path, format!("{} {size}{mtime}\n", pin.plugin_sha256))
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{}", std::process::id(), nanos)
}

/// Downloads the pinned wheel with pip into a temporary folder of the cache and installs it.
///
/// # Errors
/// [`Error::PythonMissing`], [`Error::PipFailed`], and everything [`install_wheel`] returns.
pub fn fetch_and_install(cfg: &Config, pin: &Pin) -> Result<Provisioned> {
    let pjrt_dir = cfg.cache_root.join("pjrt");
    fs::create_dir_all(&pjrt_dir).map_err(io_err("creating cache folder", &pjrt_dir))?;
    let download = pjrt_dir.join(format!(".download-{}", unique_suffix()));
    fs::create_dir_all(&download).map_err(io_err("creating download folder", &download))?;
    let result = download_wheel(cfg, pin, &download).and_then(|wheel| install_wheel(&wheel, &cfg.cache_root, pin));
    let _ = fs::remove_dir_all(&download);
    result.map(|mut p| {
        p.source = Source::Fetched;
        p
    })
}

fn download_wheel(cfg: &Config, pin: &Pin, dest: &Path) -> Result<PathBuf> {
    let spec = format!("{}=={}", pin.package, pin.version);
    let mut cmd = Command::new(&cfg.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
    ])
    .arg("--dest")
    .arg(dest)
    .arg(&spec);
    let command = format!(
        "{} -m pip download --no-deps --only-binary=:all: {spec} -d {}",
        cfg.python.to_string_lossy(),
        dest.display()
    );
    let out = output_within(&mut cmd, cfg.pip_timeout)
        .map_err(|source| Error::PythonMissing {
            python: cfg.python.clone(),
            source,
        })?
        .ok_or_else(|| Error::PipFailed {
            command: command.clone(),
            status: format!("stopped after {:?}", cfg.pip_timeout),
            stderr: format!("pip did not finish in time (set {ENV_PIP_TIMEOUT} to allow longer)"),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        return Err(Error::PipFailed {
            command,
            status: out.status.to_string(),
            stderr: tail,
        });
    }
    let wheel = dest.join(pin.wheel_file);
    if !wheel.is_file() {
        return Err(Error::PipFailed {
            command,
            status: out.status.to_string(),
            stderr: format!("pip succeeded but {} is not in {}", pin.wheel_file, dest.display()),
        });
    }
    Ok(wheel)
}

/// Runs `cmd` (stdin closed, stdout discarded, stderr captured) and waits at most `limit`;
/// `Ok(None)` when it was still running then (it is killed).
fn output_within(cmd: &mut Command, limit: std::time::Duration) -> io::Result<Option<std::process::Output>> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Drained on a thread, so that a chatty child never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if t0.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap_or_default();
    Ok(Some(std::process::Output {
        status,
        stdout: Vec::new(),
        stderr,
    }))
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 of a file, lowercase hex.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(io_err("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies a downloaded wheel and installs its plugin and header into the cache.
///
/// The wheel's sha256 is checked first; the members are extracted into a temporary folder
/// while being hashed, checked, marked verified, and the folder is renamed into place. If
/// another process installed the same entry first, its entry is used and ours discarded.
///
/// # Errors
/// [`Error::HashMismatch`], [`Error::CorruptArchive`], [`Error::Io`].
pub fn install_wheel(wheel: &Path, cache_root: &Path, pin: &Pin) -> Result<Provisioned> {
    let actual = sha256_file(wheel)?;
    if actual != pin.wheel_sha256 {
        return Err(Error::HashMismatch {
            what: "wheel",
            path: wheel.to_path_buf(),
            expected: pin.wheel_sha256.to_string(),
            actual,
        });
    }
    install_checked_wheel(wheel, cache_root, pin)
}

/// [`install_wheel`] after the wheel's hash was checked.
fn install_checked_wheel(wheel: &Path, cache_root: &Path, pin: &Pin) -> Result<Provisioned> {
    let pjrt_dir = cache_root.join("pjrt");
    fs::create_dir_all(&pjrt_dir).map_err(io_err("creating cache folder", &pjrt_dir))?;
    let staging = pjrt_dir.join(format!(".staging-{}", unique_suffix()));
    fs::create_dir_all(&staging).map_err(io_err("creating staging folder", &staging))?;
    let result = stage_entry(wheel, &staging, pin).and_then(|()| commit_entry(&staging, cache_root, pin));
    let _ = fs::remove_dir_all(&staging);
    result
}

fn stage_entry(wheel: &Path, staging: &Path, pin: &Pin) -> Result<()> {
    let file = fs::File::open(wheel).map_err(io_err("opening", wheel))?;
    let corrupt = |reason: String| Error::CorruptArchive {
        path: wheel.to_path_buf(),
        reason,
    };
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| corrupt(format!("not a zip archive: {e}")))?;
    let members = [
        ("plugin", pin.plugin_member, pin.plugin_sha256, PLUGIN_FILE),
        ("header", pin.header_member, pin.header_sha256, HEADER_FILE),
    ];
    let mut plugin_size = 0;
    for (what, member, expected, name) in members {
        let mut entry = archive
            .by_name(member)
            .map_err(|e| corrupt(format!("cannot read member {member}: {e}")))?;
        let dest = staging.join(name);
        let out = fs::File::create(&dest).map_err(io_err("creating", &dest))?;
        let mut w = HashingWriter {
            inner: io::BufWriter::new(out),
            hasher: Sha256::new(),
            written: 0,
        };
        io::copy(&mut entry, &mut w).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt(format!("member {member} does not decompress: {e}"))
            } else {
                Error::Io {
                    doing: "extracting to",
                    path: dest.clone(),
                    source: e,
                }
            }
        })?;
        w.flush().map_err(io_err("writing", &dest))?;
        let actual = hex(&w.hasher.finalize_reset());
        if actual != expected {
            return Err(Error::HashMismatch {
                what,
                path: dest,
                expected: expected.to_string(),
                actual,
            });
        }
        if what == "plugin" {
            plugin_size = w.written;
        }
        let inner = w.inner.into_inner().map_err(|e| Error::Io {
            doing: "writing",
            path: dest.clone(),
            source: e.into_error(),
        })?;
        inner.sync_all().map_err(io_err("syncing", &dest))?;
    }
    let marker = staging.join(MARKER_FILE);
    let mtime = fs::metadata(staging.join(PLUGIN_FILE)).ok().and_then(|m| mtime_ns(&m));
    write_marker(&marker, pin, plugin_size, mtime).map_err(io_err("writing", &marker))?;
    Ok(())
}

fn commit_entry(staging: &Path, cache_root: &Path, pin: &Pin) -> Result<Provisioned> {
    let dir = entry_dir(cache_root, pin);
    if !check_entry(&dir, pin) {
        if dir.exists() {
            // An incomplete or stale entry (e.g. a crash between writes in an old version):
            // move it aside so the rename below can succeed. Another process may do the same.
            let aside = dir.with_extension(format!("stale-{}", unique_suffix()));
            if fs::rename(&dir, &aside).is_ok() {
                let _ = fs::remove_dir_all(&aside);
            }
        }
        if let Err(e) = fs::rename(staging, &dir) {
            // Losing the race to another installer is fine; anything else is an error.
            if !check_entry(&dir, pin) {
                return Err(Error::Io {
                    doing: "renaming staging folder to",
                    path: dir,
                    source: e,
                });
            }
        }
    }
    Ok(Provisioned {
        plugin: dir.join(PLUGIN_FILE),
        header: Some(dir.join(HEADER_FILE)),
        sha256: Some(pin.plugin_sha256.to_string()),
        source: Source::Cache,
    })
}

#[cfg(test)]
mod tests;
