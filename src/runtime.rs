//! The process-wide default runtime: one plugin, one client, shared by every fit.
//!
//! The first call to [`client`] provisions the plugin ([`plugin_location`]), loads it and
//! creates a client; later calls, from any thread, share that client. A failed first call
//! is not cached: the next call tries again (for example after `NLSQ_PJRT_PLUGIN` was fixed).

use once_cell::sync::OnceCell;

use crate::error::Result;
use crate::pjrt::{Client, Plugin};

/// Where the build script left the plugin, if it provisioned one.
const BUILD_PLUGIN_PATH: Option<&str> = option_env!("NLSQ_BUILD_PLUGIN_PATH");

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
    if let Some(path) = BUILD_PLUGIN_PATH.map(std::path::Path::new) {
        if let Some(root) = path.ancestors().nth(3) {
            if let Some(hit) = xla_build::find_cached(root, &xla_build::CPU_PLUGIN) {
                return Ok(hit);
            }
        }
    }
    Ok(xla_build::provision_with(&cfg, &xla_build::CPU_PLUGIN)?)
}

/// The default plugin, loaded once per process.
///
/// # Errors
/// Provisioning or loading errors.
pub fn plugin() -> Result<&'static Plugin> {
    Plugin::load(&plugin_location()?.plugin)
}

/// The process-wide client of the default plugin (created on first use, shared after).
///
/// # Errors
/// Provisioning, loading or client-creation errors.
pub fn client() -> Result<Client> {
    CLIENT.get_or_try_init(|| plugin()?.create_client(&[])).cloned()
}
