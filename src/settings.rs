//! Every environment variable the library reads, read here and nowhere else.
//!
//! Each function reads its variable when called; callers that need one value for the life of
//! the process (the runtime's client and pinned workers, the disk cache's folder and bound)
//! keep what they read first. On/off switches are on unless set to `0` or `off` (any case,
//! surrounding blanks ignored); a number that does not parse is ignored (the default applies).
//!
//! Plugin provisioning (`NLSQ_PJRT_PLUGIN`, `NLSQ_PJRT_WHEEL`, `NLSQ_CACHE_DIR`,
//! `NLSQ_OFFLINE`, `NLSQ_PYTHON`, `NLSQ_PIP_TIMEOUT`) is read by the `xla_build` crate, which
//! the build script uses too; [`plugin_is_overridden`] and [`cache_root`] ask it. The table of
//! all variables, the command-line tool's included, is `docs/environment.md`.

use std::path::PathBuf;

/// `XLA_FLAGS`: XLA's own options, read by the plugin when it first compiles. Default: unset,
/// and nlsq adds its options before loading the plugin (`runtime::xla_flags_with_defaults`,
/// [`xla_defaults`]). Part of every executable cache key.
pub(crate) fn xla_flags() -> Option<String> {
    std::env::var("XLA_FLAGS").ok()
}

/// Sets `XLA_FLAGS` for this process (the runtime does, once, before the plugin is loaded).
pub(crate) fn set_xla_flags(flags: &str) {
    std::env::set_var("XLA_FLAGS", flags);
}

/// `NLSQ_XLA_DEFAULTS`: `0` (or `off`) keeps nlsq from adding its default XLA options to
/// `XLA_FLAGS`. Default: on.
pub(crate) fn xla_defaults() -> bool {
    !is_off(std::env::var("NLSQ_XLA_DEFAULTS").ok().as_deref())
}

/// `TF_CPP_MIN_LOG_LEVEL`: the plugin's log level. Default: nlsq sets `1` (warnings and errors,
/// no informational lines) when it is unset; this sets it then and leaves a user's value alone.
pub(crate) fn default_plugin_log_level() {
    if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
        std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "1");
    }
}

/// `NLSQ_PJRT_CLIENT_OPTIONS`: create options of the default client, `name=value,...`
/// (`runtime::parse_client_options`), replacing nlsq's default of the same name. Default: none.
pub(crate) fn pjrt_client_options() -> Option<String> {
    std::env::var("NLSQ_PJRT_CLIENT_OPTIONS").ok()
}

/// `NLSQ_PJRT_PLUGIN` (read by `xla_build`): true when it names the plugin to load instead of
/// the pinned CPU plugin. Such a plugin gets no nlsq create options, no CPU-only XLA option, no
/// executable compaction and no pinned batch workers. Default: unset (the pinned plugin).
pub(crate) fn plugin_is_overridden() -> bool {
    std::env::var_os(xla_build::ENV_PLUGIN).is_some_and(|v| !v.is_empty())
}

/// `NLSQ_PIN_THREADS`: `0` (or `off`) runs a batch's chunks on the shared client's devices
/// instead of on one client and one thread pinned to each core. Default: on (Linux, two or more
/// cores, the pinned plugin).
pub(crate) fn pin_threads() -> bool {
    !is_off(std::env::var("NLSQ_PIN_THREADS").ok().as_deref())
}

/// `NLSQ_COMPACT_EXECUTABLES`: `0` (or `off`) keeps compiled executables whole instead of
/// dropping the bodies of fused computations from them (`fit::cache`'s compaction, and the
/// structural check of disk entries that goes with it). Default: on, for the pinned plugin.
pub(crate) fn compact_executables() -> bool {
    !is_off(std::env::var("NLSQ_COMPACT_EXECUTABLES").ok().as_deref())
}

/// `NLSQ_BATCH_THREADS`: at most this many batch chunks run at once (a positive integer).
/// Default: `None`, one per core the process may use.
pub(crate) fn batch_threads() -> Option<usize> {
    positive(std::env::var("NLSQ_BATCH_THREADS").ok().as_deref())
}

/// `NLSQ_DISK_CACHE`: `0` (or `off`) keeps compiled executables in memory only. Default: on.
pub(crate) fn disk_cache() -> bool {
    !is_off(std::env::var("NLSQ_DISK_CACHE").ok().as_deref())
}

/// `NLSQ_CACHE_MAX_BYTES`: the size bound of the disk cache of executables, in bytes; the least
/// recently used entries go first. Default: `None`, 1 GiB (`fit::cache::DEFAULT_MAX_BYTES`).
pub(crate) fn cache_max_bytes() -> Option<u64> {
    std::env::var("NLSQ_CACHE_MAX_BYTES").ok()?.trim().parse().ok()
}

/// The cache folder (plugin and executables): `NLSQ_CACHE_DIR`, else `$XDG_CACHE_HOME/nlsq`,
/// else `~/.cache/nlsq` (`xla_build::default_cache_root`). `None` when none is set.
pub(crate) fn cache_root() -> Option<PathBuf> {
    xla_build::default_cache_root().ok()
}

/// `NLSQ_BUILD_PLUGIN_PATH`, read when nlsq is compiled (the build script sets it): where the
/// build provisioned the plugin, a fallback when the cache no longer has it.
pub(crate) const BUILD_PLUGIN_PATH: Option<&str> = option_env!("NLSQ_BUILD_PLUGIN_PATH");

/// True for a switch set to `0` or `off` (any case, blanks around ignored).
pub(crate) fn is_off(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "0" || v.eq_ignore_ascii_case("off")
    })
}

/// A positive integer, or `None`.
fn positive(value: Option<&str>) -> Option<usize> {
    value?.trim().parse::<usize>().ok().filter(|&k| k > 0)
}

#[cfg(test)]
mod tests {
    use super::{is_off, positive};

    #[test]
    fn switches_are_off_only_for_0_or_off() {
        for v in ["0", " 0 ", "off", "OFF", "Off"] {
            assert!(is_off(Some(v)), "{v:?}");
        }
        for v in [None, Some(""), Some("1"), Some("on"), Some("false"), Some("00")] {
            assert!(!is_off(v), "{v:?}");
        }
    }

    #[test]
    fn counts_are_positive_integers_or_ignored() {
        assert_eq!(positive(Some("3")), Some(3));
        assert_eq!(positive(Some(" 2 ")), Some(2));
        for v in [None, Some("0"), Some("-1"), Some("two"), Some("1.5"), Some("")] {
            assert_eq!(positive(v), None, "{v:?}");
        }
    }
}
