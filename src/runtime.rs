//! The process-wide default runtime: one plugin, one client, shared by every fit.
//!
//! The first call to [`client`] provisions the plugin ([`plugin_location`]), loads it and
//! creates a client; later calls, from any thread, share that client. A failed first call
//! is not cached: the next call tries again (for example after `NLSQ_PJRT_PLUGIN` was fixed).
//!
//! Batches on the CPU also use [`cpu_workers`]: one more client per core, each with its thread
//! pools pinned to that core, and one long-lived nlsq thread per core to drive it.

use once_cell::sync::OnceCell;

use crate::error::Result;
use crate::pjrt::{Client, NamedValue, Plugin};
use crate::settings;

static CLIENT: OnceCell<Client> = OnceCell::new();

/// Finds the plugin to load: `NLSQ_PJRT_PLUGIN`, else the pinned plugin in the cache, else the
/// path the build script provisioned (when it still exists), else a fresh fetch into the cache.
///
/// # Errors
/// [`crate::Error::Provision`], whose message says what to set.
pub fn plugin_location() -> Result<xla_build::Provisioned> {
    let cfg = xla_build::Config::from_env()?;
    if let Some(p) = &cfg.plugin_override {
        return Ok(xla_build::use_override(p)?);
    }
    if let Some(hit) = xla_build::find_cached(&cfg.cache_root, &xla_build::CPU_PLUGIN) {
        return Ok(hit);
    }
    if let Some(path) = settings::BUILD_PLUGIN_PATH.map(std::path::Path::new) {
        if let Some(root) = path.ancestors().nth(3) {
            if let Some(hit) = xla_build::find_cached(root, &xla_build::CPU_PLUGIN) {
                return Ok(hit);
            }
        }
    }
    Ok(xla_build::provision_with(&cfg, &xla_build::CPU_PLUGIN)?)
}

/// The XLA option nlsq sets by default: compile a `while` loop whose body touches up to this many
/// bytes into one kernel (XLA:CPU's small-while-loop hoisting; its own default is 1 kB). A fit is
/// one loop, so with the limit raised the whole solve runs as a single compiled function instead
/// of a kernel launch per operation per iteration: faster fits at every size and a shorter
/// compile (figures: docs/performance.md, "Figures behind the runtime's choices").
pub const SMALL_WHILE_LOOP_BYTES: u64 = 1 << 40;

/// The second XLA option nlsq sets by default, for the pinned CPU plugin only (another plugin may
/// not know the flag, and XLA ends the process on an unknown one): XLA:CPU's older elemental
/// emitters instead of its MLIR fusion emitters. The fit program is smaller, compiles and loads
/// from the disk cache faster, and runs as fast, with the same results to the last digit
/// (figures: docs/performance.md, "Figures behind the runtime's choices").
pub const CPU_FUSION_EMITTERS_FLAG: &str = "--xla_cpu_use_fusion_emitters=false";

/// `XLA_FLAGS` with nlsq's default XLA options added: the `XLA_FLAGS` to set, or `None` to leave
/// the variable as it is. Nothing is added when `nlsq_defaults` (the value of
/// `NLSQ_XLA_DEFAULTS`) is `0` or `off`. The small-while-loop
/// threshold ([`SMALL_WHILE_LOOP_BYTES`]) is added unless the flags already set
/// `--xla_backend_extra_options` (XLA keeps only one such flag, so the user's wins whole);
/// with `pinned_cpu_plugin`, [`CPU_FUSION_EMITTERS_FLAG`] is added unless the flags already
/// mention `xla_cpu_use_fusion_emitters`.
pub fn xla_flags_with_defaults(
    current: Option<&str>,
    nlsq_defaults: Option<&str>,
    pinned_cpu_plugin: bool,
) -> Option<String> {
    if settings::is_off(nlsq_defaults) {
        return None;
    }
    let current = current.unwrap_or("").trim();
    let mut ours = Vec::new();
    if !current.contains("--xla_backend_extra_options") {
        ours.push(format!(
            "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={SMALL_WHILE_LOOP_BYTES}"
        ));
    }
    if pinned_cpu_plugin && !current.contains("xla_cpu_use_fusion_emitters") {
        ours.push(CPU_FUSION_EMITTERS_FLAG.to_string());
    }
    if ours.is_empty() {
        return None;
    }
    Some(
        std::iter::once(current)
            .filter(|c| !c.is_empty())
            .chain(ours.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The default plugin, loaded once per process. Before the first load, nlsq's default XLA options
/// are added to the process's `XLA_FLAGS` (see [`xla_flags_with_defaults`]; the plugin reads the
/// variable once, when it first compiles). Set `NLSQ_XLA_DEFAULTS=0` to run XLA with its own
/// defaults; the executable cache keys include `XLA_FLAGS`, so the two never share entries.
/// Unless `TF_CPP_MIN_LOG_LEVEL` is set, it is set to `1`: the plugin's informational log lines
/// are dropped, its warnings and errors kept.
/// Setting a variable races with C code that reads the environment on another thread at the
/// same moment: a program with such threads should create the runtime ([`client`]) first.
///
/// # Errors
/// Provisioning or loading errors.
pub fn plugin() -> Result<&'static Plugin> {
    static XLA_DEFAULTS: std::sync::Once = std::sync::Once::new();
    XLA_DEFAULTS.call_once(|| {
        let current = settings::xla_flags();
        let opt_out = (!settings::xla_defaults()).then_some("0");
        let pinned_cpu = !settings::plugin_is_overridden();
        if let Some(flags) = xla_flags_with_defaults(current.as_deref(), opt_out, pinned_cpu) {
            // Runs once, before the plugin (the only other reader of XLA_FLAGS in nlsq) is loaded.
            settings::set_xla_flags(&flags);
        }
        // The plugin logs informational lines to stderr (e.g. the CPU device count nlsq sets);
        // keep its warnings and errors only, unless the user chose a level.
        settings::default_plugin_log_level();
    });
    Plugin::load(&plugin_location()?.plugin)
}

/// The process-wide client of the default plugin (created on first use, shared after).
///
/// Its create options are nlsq's defaults for the plugin, then those of
/// `NLSQ_PJRT_CLIENT_OPTIONS` (see [`parse_client_options`]), which replace a default of the
/// same name. nlsq's defaults: for the pinned CPU plugin one device per core
/// (`cpu_device_count`); for a CUDA plugin (one whose attributes include `cuda_version`)
/// `preallocate=false`, so that a process takes GPU memory as its fits need it instead of 75%
/// of the card up front: with the plugin's default, a second process on the same GPU (two
/// `nlsq fit` commands, a test suite's child processes) fails with "out of memory".
///
/// # Errors
/// Provisioning, loading or client-creation errors; [`crate::Error::InvalidOption`] when
/// `NLSQ_PJRT_CLIENT_OPTIONS` does not parse.
pub fn client() -> Result<Client> {
    CLIENT
        .get_or_try_init(|| {
            let plugin = plugin()?;
            let user = match settings::pjrt_client_options() {
                Some(v) => parse_client_options(&v)?,
                None => Vec::new(),
            };
            let ours: Vec<(String, NamedValue)> = if !settings::plugin_is_overridden() {
                // The pinned CPU plugin runs the executions of one device one at a time; one
                // device per core lets independent executions (a batch's chunks, when
                // `cpu_workers` is off) run side by side.
                vec![("cpu_device_count".into(), NamedValue::I64(cores() as i64))]
            } else if plugin
                .attributes()
                .is_ok_and(|a| a.iter().any(|(k, _)| k == "cuda_version"))
            {
                vec![("preallocate".into(), NamedValue::Bool(false))]
            } else {
                Vec::new()
            };
            let options: Vec<(&str, NamedValue)> = ours
                .iter()
                .filter(|(k, _)| !user.iter().any(|(u, _)| u == k))
                .chain(&user)
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            plugin.create_client(&options)
        })
        .cloned()
}

/// Parses `NLSQ_PJRT_CLIENT_OPTIONS`: comma-separated `name=value` create options for the
/// default client, e.g. `preallocate=true,memory_fraction=0.5` for a CUDA plugin. A value is a
/// boolean (`true`/`false`), an integer, a number with a `.` or an exponent (a 32-bit float, as
/// PJRT's `memory_fraction` is), a list of integers in brackets (`visible_devices=[0,1]`), or
/// else a string. Which names a plugin accepts is the plugin's business; an unknown one is
/// reported by the plugin when the client is created.
///
/// # Errors
/// [`crate::Error::InvalidOption`] for an entry without `=` or with an empty name, or a
/// bracketed list that is not all integers.
pub fn parse_client_options(s: &str) -> Result<Vec<(String, NamedValue)>> {
    let bad = |entry: &str, constraint: &'static str| crate::Error::InvalidOption {
        field: "NLSQ_PJRT_CLIENT_OPTIONS",
        value: entry.to_string(),
        constraint,
    };
    // Split on commas outside brackets.
    let mut entries = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                entries.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&s[start..]);
    let mut out = Vec::new();
    for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, value)) = entry.split_once('=') else {
            return Err(bad(entry, "name=value"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(bad(entry, "name=value with a non-empty name"));
        }
        let parsed = if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            let items = list
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| bad(entry, "a list of integers, e.g. [0,1]"))
                })
                .collect::<Result<Vec<_>>>()?;
            NamedValue::I64List(items)
        } else if value == "true" || value == "false" {
            NamedValue::Bool(value == "true")
        } else if let Ok(i) = value.parse::<i64>() {
            NamedValue::I64(i)
        } else if let (true, Ok(f)) = (value.contains(['.', 'e', 'E']), value.parse::<f32>()) {
            NamedValue::F32(f)
        } else {
            NamedValue::Str(value.to_string())
        };
        out.push((name.to_string(), parsed));
    }
    Ok(out)
}

/// One core's client for the batch fitter: a single-device CPU client whose thread pools run
/// on [`CpuWorker::cpu`] only.
#[derive(Clone, Debug)]
pub struct CpuWorker {
    /// The CPU its thread pools (and the batch fitter's thread that uses it) are pinned to.
    pub cpu: usize,
    /// The client.
    pub client: Client,
}

/// The per-core clients the batch fitter runs its chunks on, created on first use: one
/// single-device client per CPU this process may use (up to the available parallelism), each
/// created by a thread pinned to its CPU, so that the plugin's thread pools for that client,
/// which inherit the pin, run there only.
///
/// Why: the pinned CPU plugin runs every execution on its own pool threads, and with one
/// client for all cores the kernel often put both chunks' pool threads on one core while the
/// other idled (a quarter to a half of the batch calls took much longer than the rest; figures:
/// docs/performance.md, "Figures behind the runtime's choices"). With a
/// pinned client per core the two chunks run side by side every time.
///
/// Empty (the batch fitter then uses [`client`]'s devices) when `NLSQ_PIN_THREADS=0`, when
/// `NLSQ_PJRT_PLUGIN` names the plugin, with fewer than two CPUs, or where threads cannot be
/// pinned (systems other than Linux).
///
/// # Errors
/// Provisioning, loading or client-creation errors.
pub fn cpu_workers() -> Result<&'static [CpuWorker]> {
    Ok(&pinned()?.0)
}

/// The long-lived threads that run the batch fitter's chunks: thread `k` is pinned to
/// `cpu_workers()[k].cpu` and uses that worker's client. `None` where [`cpu_workers`] is empty.
pub(crate) fn cpu_worker_pool() -> Result<Option<&'static rayon::ThreadPool>> {
    Ok(pinned()?.1.as_ref())
}

type Pinned = (Vec<CpuWorker>, Option<rayon::ThreadPool>);

fn pinned() -> Result<&'static Pinned> {
    static PINNED: OnceCell<Pinned> = OnceCell::new();
    PINNED.get_or_try_init(|| {
        let none = || Ok((Vec::new(), None));
        if !settings::pin_threads() || settings::plugin_is_overridden() {
            return none();
        }
        let Ok(allowed) = crate::pjrt::affinity::allowed_cpus() else {
            return none();
        };
        let cpus: Vec<usize> = allowed.into_iter().take(cores()).collect();
        if cpus.len() < 2 {
            return none();
        }
        let plugin = plugin()?;
        // Each thread pins itself as it starts, and creates its client from there, so that the
        // plugin's pools for that client inherit the pin. The caller's threads stay as they are.
        let start_cpus = cpus.clone();
        let Ok(pool) = rayon::ThreadPoolBuilder::new()
            .num_threads(cpus.len())
            .thread_name(|k| format!("nlsq-batch-{k}"))
            .start_handler(move |k| {
                let _ = crate::pjrt::affinity::pin_current_thread(start_cpus[k]);
            })
            .build()
        else {
            return none();
        };
        let made: Vec<Result<Option<CpuWorker>>> = pool.broadcast(|ctx| {
            let cpu = cpus[ctx.index()];
            // A CPU that could not be pinned (e.g. taken offline): no pinned workers at all.
            if crate::pjrt::affinity::allowed_cpus().ok() != Some(vec![cpu]) {
                return Ok(None);
            }
            let client = plugin.create_client(&[("cpu_device_count", NamedValue::I64(1))])?;
            Ok(Some(CpuWorker { cpu, client }))
        });
        let made = made.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(match made.into_iter().collect::<Option<Vec<_>>>() {
            Some(workers) => (workers, Some(pool)),
            None => (Vec::new(), None),
        })
    })
}

/// The cores this process may use (`available_parallelism`, which reads the cgroup limits
/// from /proc on every call, so it is read once).
pub(crate) fn cores() -> usize {
    static CORES: once_cell::sync::Lazy<usize> =
        once_cell::sync::Lazy::new(|| std::thread::available_parallelism().map_or(1, |k| k.get()));
    *CORES
}

/// True when a newly compiled executable is replaced by its compacted form
/// (`fit::cache::compact`: the bodies of fused computations dropped from what is serialized, so
/// that a later process loads it from the disk cache in about 0.6 of the time): with the pinned
/// CPU plugin, whose format and loader were checked, unless `NLSQ_COMPACT_EXECUTABLES=0`.
pub(crate) fn compacts_executables() -> bool {
    !settings::plugin_is_overridden() && settings::compact_executables()
}

#[cfg(test)]
mod tests {
    use super::{parse_client_options, xla_flags_with_defaults};
    use crate::pjrt::NamedValue;

    #[test]
    fn client_options_parse_by_kind_and_bad_entries_are_errors() {
        let o = parse_client_options(
            " preallocate=false, memory_fraction=0.5 ,visible_devices=[0, 2],allocator=bfc,count=3,x=1e-3,",
        )
        .unwrap();
        assert_eq!(
            o,
            vec![
                ("preallocate".to_string(), NamedValue::Bool(false)),
                ("memory_fraction".to_string(), NamedValue::F32(0.5)),
                ("visible_devices".to_string(), NamedValue::I64List(vec![0, 2])),
                ("allocator".to_string(), NamedValue::Str("bfc".into())),
                ("count".to_string(), NamedValue::I64(3)),
                ("x".to_string(), NamedValue::F32(1e-3)),
            ]
        );
        assert_eq!(parse_client_options("").unwrap(), vec![]);
        assert_eq!(parse_client_options(" , ").unwrap(), vec![]);
        for bad in ["preallocate", "=1", "a=1,b", "visible_devices=[0,x]"] {
            let e = parse_client_options(bad).unwrap_err().to_string();
            assert!(e.contains("NLSQ_PJRT_CLIENT_OPTIONS"), "{bad}: {e}");
        }
    }

    #[test]
    fn adds_the_default_options_unless_told_not_to() {
        let loops = format!(
            "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={}",
            super::SMALL_WHILE_LOOP_BYTES
        );
        let both = format!("{loops} {}", super::CPU_FUSION_EMITTERS_FLAG);
        assert_eq!(xla_flags_with_defaults(None, None, true), Some(both.clone()));
        assert_eq!(xla_flags_with_defaults(Some("  "), None, true), Some(both.clone()));
        assert_eq!(
            xla_flags_with_defaults(Some("--xla_dump_to=/tmp/d"), None, true),
            Some(format!("--xla_dump_to=/tmp/d {both}"))
        );
        // The user's own extra options are kept whole; the emitter flag is still added.
        assert_eq!(
            xla_flags_with_defaults(Some("--xla_backend_extra_options=a=1"), None, true),
            Some(format!(
                "--xla_backend_extra_options=a=1 {}",
                super::CPU_FUSION_EMITTERS_FLAG
            ))
        );
        // The user's choice of emitters is kept.
        assert_eq!(
            xla_flags_with_defaults(Some("--xla_cpu_use_fusion_emitters=true"), None, true),
            Some(format!("--xla_cpu_use_fusion_emitters=true {loops}"))
        );
        assert_eq!(
            xla_flags_with_defaults(
                Some("--xla_backend_extra_options=a=1 --xla_cpu_use_fusion_emitters=true"),
                None,
                true
            ),
            None
        );
        // Another plugin (NLSQ_PJRT_PLUGIN) gets the loop threshold only.
        assert_eq!(xla_flags_with_defaults(None, None, false), Some(loops.clone()));
        assert_eq!(xla_flags_with_defaults(None, Some("0"), true), None);
        assert_eq!(xla_flags_with_defaults(None, Some("1"), false), Some(loops));
    }
}
