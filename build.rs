//! Provisions the pinned PJRT CPU plugin at build time, so that `cargo build` on a fresh
//! machine leaves nothing to fetch at run time. A failure here is only a warning: the library
//! provisions again at run time and reports the error there, with what to set.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The test binaries export `mi_malloc` when they link mimalloc (tests/pjrt_runtime.rs does),
    // so that `nlsq::pjrt::process_malloc()` can name it; harmless where nothing defines it.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic-symbol=mi_malloc");
    }
    for var in [
        xla_build::ENV_PLUGIN,
        xla_build::ENV_CACHE_DIR,
        xla_build::ENV_OFFLINE,
        xla_build::ENV_WHEEL,
        xla_build::ENV_PYTHON,
        "XDG_CACHE_HOME",
        "HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    match xla_build::provision() {
        Ok(p) => {
            println!("cargo:rustc-env=NLSQ_BUILD_PLUGIN_PATH={}", p.plugin.display());
        }
        Err(e) => println!("cargo:warning=nlsq: the PJRT plugin was not provisioned at build time ({e}); it will be provisioned at run time"),
    }
}
