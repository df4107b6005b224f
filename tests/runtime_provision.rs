//! Run-time provisioning through the library: the fallback to the build-time plugin and the
//! errors for a bad override or an empty offline cache. Its own test binary, because it sets
//! process-wide environment variables.

use nlsq::Error;

#[test]
fn runtime_provisioning_follows_the_documented_order() {
    let empty = std::env::temp_dir().join(format!("nlsq-empty-cache-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();

    // 1. A bad override is an error that names the variable, never a fallback.
    std::env::set_var("NLSQ_PJRT_PLUGIN", "/nonexistent/libpjrt.so");
    let err = nlsq::runtime::plugin_location().unwrap_err();
    assert!(
        matches!(err, Error::Provision(xla_build::Error::OverrideMissing { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("NLSQ_PJRT_PLUGIN"), "{err}");
    std::env::remove_var("NLSQ_PJRT_PLUGIN");

    // 2. An empty cache, offline: the plugin the build script provisioned is found (the build
    //    provisioned it into the default cache). When the build could not provision, the
    //    error explains NLSQ_OFFLINE.
    std::env::set_var("NLSQ_CACHE_DIR", &empty);
    std::env::set_var("NLSQ_OFFLINE", "1");
    match nlsq::runtime::plugin_location() {
        Ok(p) => {
            assert!(p.plugin.is_file(), "{p:?}");
            assert!(!p.plugin.starts_with(&empty));
        }
        Err(e) => {
            assert!(
                option_env!("NLSQ_BUILD_PLUGIN_PATH").is_none(),
                "fallback to the build-time plugin failed: {e}"
            );
            assert!(e.to_string().contains("NLSQ_OFFLINE"), "{e}");
        }
    }
    // 3. The offline error itself, from the provisioning crate with the same empty cache.
    let cfg = xla_build::Config {
        offline: true,
        ..xla_build::Config::with_cache_root(&empty)
    };
    let err = xla_build::provision_with(&cfg, &xla_build::CPU_PLUGIN).unwrap_err();
    assert!(err.to_string().contains("NLSQ_OFFLINE=1 forbids fetching"), "{err}");
    std::env::remove_var("NLSQ_OFFLINE");
    std::env::remove_var("NLSQ_CACHE_DIR");
    let _ = std::fs::remove_dir_all(&empty);
}
