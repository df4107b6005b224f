use super::*;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Writes a fake wheel holding `plugin` and `header` bytes, returns its path and a pin that
/// matches it.
fn fake_wheel(dir: &Path, plugin: &[u8], header: &[u8]) -> (PathBuf, Pin) {
    let path = dir.join("fake.whl");
    let mut zw = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zw.start_file("pkg/plugin.so", opts).unwrap();
    zw.write_all(plugin).unwrap();
    zw.start_file("pkg/include/pjrt_c_api.h", opts).unwrap();
    zw.write_all(header).unwrap();
    zw.finish().unwrap();
    let pin = Pin {
        package: "fake",
        version: "0",
        wheel_file: "fake.whl",
        wheel_sha256: leak(sha256_file(&path).unwrap()),
        plugin_member: "pkg/plugin.so",
        plugin_sha256: leak(sha(plugin)),
        header_member: "pkg/include/pjrt_c_api.h",
        header_sha256: leak(sha(header)),
    };
    (path, pin)
}

#[test]
fn wheel_with_wrong_hash_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, mut pin) = fake_wheel(tmp.path(), b"plugin", b"header");
    pin.wheel_sha256 = CPU_PLUGIN.wheel_sha256;
    let err = install_wheel(&wheel, &tmp.path().join("cache"), &pin).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { what: "wheel", .. }), "{err}");
    assert!(find_cached(&tmp.path().join("cache"), &pin).is_none());
}

#[test]
fn corrupt_zip_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("bad.whl");
    fs::write(&wheel, b"this is not a zip archive at all").unwrap();
    let pin = Pin {
        wheel_sha256: leak(sha256_file(&wheel).unwrap()),
        ..CPU_PLUGIN
    };
    let err = install_wheel(&wheel, &tmp.path().join("cache"), &pin).unwrap_err();
    assert!(matches!(err, Error::CorruptArchive { .. }), "{err}");
    assert!(err.to_string().contains("not a zip archive"), "{err}");
}

#[test]
fn plugin_with_wrong_hash_is_rejected_and_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, mut pin) = fake_wheel(tmp.path(), b"plugin bytes", b"header");
    pin.plugin_sha256 = leak(sha(b"other bytes"));
    let cache = tmp.path().join("cache");
    let err = install_wheel(&wheel, &cache, &pin).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { what: "plugin", .. }), "{err}");
    assert!(find_cached(&cache, &pin).is_none());
    // No staging debris is left behind.
    let left: Vec<_> = fs::read_dir(cache.join("pjrt")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn missing_member_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, mut pin) = fake_wheel(tmp.path(), b"p", b"h");
    pin.plugin_member = "pkg/absent.so";
    let err = install_wheel(&wheel, &tmp.path().join("cache"), &pin).unwrap_err();
    assert!(matches!(err, Error::CorruptArchive { .. }), "{err}");
    assert!(err.to_string().contains("pkg/absent.so"), "{err}");
}

#[test]
fn good_wheel_installs_and_is_found_in_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, pin) = fake_wheel(tmp.path(), b"plugin bytes", b"header bytes");
    let cache = tmp.path().join("cache");
    let p = install_wheel(&wheel, &cache, &pin).unwrap();
    assert_eq!(fs::read(&p.plugin).unwrap(), b"plugin bytes");
    assert_eq!(fs::read(p.header.as_ref().unwrap()).unwrap(), b"header bytes");
    let hit = find_cached(&cache, &pin).unwrap();
    assert_eq!(hit.plugin, p.plugin);
    assert_eq!(hit.source, Source::Cache);
    // provision_with uses the cache without fetching, even offline.
    let cfg = Config {
        offline: true,
        ..Config::with_cache_root(&cache)
    };
    assert_eq!(provision_with(&cfg, &pin).unwrap().plugin, p.plugin);
}

#[test]
fn truncated_cache_entry_is_not_a_hit() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, pin) = fake_wheel(tmp.path(), b"plugin bytes", b"header");
    let cache = tmp.path().join("cache");
    let p = install_wheel(&wheel, &cache, &pin).unwrap();
    fs::write(&p.plugin, b"plug").unwrap();
    assert!(find_cached(&cache, &pin).is_none());
    // Installing again repairs the entry.
    install_wheel(&wheel, &cache, &pin).unwrap();
    assert_eq!(
        fs::read(find_cached(&cache, &pin).unwrap().plugin).unwrap(),
        b"plugin bytes"
    );
}

#[test]
fn concurrent_installs_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = vec![7u8; 4 << 20];
    let (wheel, pin) = fake_wheel(tmp.path(), &plugin, b"header");
    let cache = tmp.path().join("cache");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| install_wheel(&wheel, &cache, &pin)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert_eq!(fs::read(r.unwrap().plugin).unwrap(), plugin);
    }
    let names: Vec<_> = fs::read_dir(cache.join("pjrt"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(pin.plugin_sha256)]);
}

#[test]
fn offline_with_empty_cache_explains_what_to_set() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        offline: true,
        ..Config::with_cache_root(tmp.path())
    };
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(matches!(err, Error::Offline { .. }), "{err}");
    let msg = err.to_string();
    for needle in [
        "NLSQ_OFFLINE",
        "NLSQ_CACHE_DIR",
        "NLSQ_PJRT_PLUGIN",
        "xla-cpu-pjrt==0.0.1",
    ] {
        assert!(msg.contains(needle), "{msg}");
    }
}

#[test]
fn missing_python_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        python: "/nonexistent/python3".into(),
        ..Config::with_cache_root(tmp.path())
    };
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(matches!(err, Error::PythonMissing { .. }), "{err}");
    assert!(err.to_string().contains("NLSQ_PYTHON"), "{err}");
}

#[test]
fn failing_pip_is_reported_with_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    // `python3 -c` style failure: use `false` as the interpreter, which exits 1.
    let cfg = Config {
        python: "false".into(),
        ..Config::with_cache_root(tmp.path())
    };
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(matches!(err, Error::PipFailed { .. }), "{err}");
    // The download folder is cleaned up.
    let left: Vec<_> = fs::read_dir(tmp.path().join("pjrt")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn override_must_exist() {
    let cfg = Config {
        plugin_override: Some("/nonexistent/plugin.so".into()),
        ..Config::with_cache_root("/nonexistent")
    };
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(matches!(err, Error::OverrideMissing { .. }), "{err}");
}

#[test]
fn a_cached_plugin_damaged_in_place_is_not_a_hit_and_is_healed() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, pin) = fake_wheel(tmp.path(), b"plugin bytes", b"header");
    let cache = tmp.path().join("cache");
    let p = install_wheel(&wheel, &cache, &pin).unwrap();
    // Same size, bytes zeroed in place (its modification time moves on).
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&p.plugin, b"plug\0\0\0\0ytes").unwrap();
    assert!(
        find_cached(&cache, &pin).is_none(),
        "a damaged plugin of the right size is no hit"
    );
    install_wheel(&wheel, &cache, &pin).unwrap();
    assert_eq!(
        fs::read(find_cached(&cache, &pin).unwrap().plugin).unwrap(),
        b"plugin bytes"
    );
    // Touched but intact (a copy, a backup restore): hashed once, still a hit, time recorded.
    let f = fs::File::options().write(true).open(&p.plugin).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    assert!(find_cached(&cache, &pin).is_some());
    let marker = fs::read_to_string(p.plugin.with_file_name("VERIFIED")).unwrap();
    assert_eq!(marker.split_whitespace().count(), 3, "{marker}");
}

#[test]
fn a_pip_that_never_exits_is_stopped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("slow-python");
    fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = Config {
        python: script.into_os_string(),
        pip_timeout: std::time::Duration::from_millis(500),
        ..Config::with_cache_root(tmp.path().join("cache"))
    };
    let t0 = std::time::Instant::now();
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(matches!(err, Error::PipFailed { .. }), "{err}");
    assert!(err.to_string().contains("NLSQ_PIP_TIMEOUT"), "{err}");
}

#[test]
fn a_local_wheel_is_installed_without_pip_even_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheel, pin) = fake_wheel(tmp.path(), b"plugin bytes", b"header bytes");
    let cache = tmp.path().join("cache");
    let cfg = Config {
        wheel: Some(wheel.clone()),
        offline: true,
        python: "/nonexistent/python3".into(),
        ..Config::with_cache_root(&cache)
    };
    let p = provision_with(&cfg, &pin).unwrap();
    assert_eq!(p.source, Source::Wheel);
    assert_eq!(fs::read(&p.plugin).unwrap(), b"plugin bytes");
    assert_eq!(fs::read(p.header.as_ref().unwrap()).unwrap(), b"header bytes");
    // The wheel stays where it was; the next provisioning is a cache hit.
    assert!(wheel.is_file());
    let again = provision_with(&cfg, &pin).unwrap();
    assert_eq!((again.plugin, again.source), (p.plugin, Source::Cache));
}

#[test]
fn a_local_wheel_that_is_not_the_pinned_one_is_rejected_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    // A well-formed wheel, but not the pinned release.
    let (wheel, _) = fake_wheel(tmp.path(), b"plugin bytes", b"header bytes");
    let cache = tmp.path().join("cache");
    let mut cfg = Config {
        wheel: Some(wheel.clone()),
        python: "/nonexistent/python3".into(),
        ..Config::with_cache_root(&cache)
    };
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(matches!(err, Error::WheelMismatch { .. }), "{err}");
    let msg = err.to_string();
    for needle in [
        "NLSQ_PJRT_WHEEL",
        CPU_PLUGIN.wheel_sha256,
        CPU_PLUGIN.wheel_file,
        "pip download",
        "xla-cpu-pjrt==0.0.1",
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert!(find_cached(&cache, &CPU_PLUGIN).is_none());
    assert!(wheel.is_file(), "the user's file is left alone");
    // A path that names nothing.
    cfg.wheel = Some(tmp.path().join("absent.whl"));
    let err = provision_with(&cfg, &CPU_PLUGIN).unwrap_err();
    assert!(matches!(err, Error::WheelMissing { .. }), "{err}");
    assert!(err.to_string().contains("NLSQ_PJRT_WHEEL"), "{err}");
}

/// The real pinned wheel, when one is at hand (`NLSQ_PJRT_WHEEL` names it; the installed
/// cache keeps the plugin, not the wheel): installed into a fresh cache without pip, both
/// hashes checked.
#[test]
fn the_real_pinned_wheel_is_accepted_when_one_is_at_hand() {
    let Some(wheel) = std::env::var_os(ENV_WHEEL).map(PathBuf::from).filter(|p| p.is_file()) else {
        eprintln!("no real wheel checked: set {ENV_WHEEL} to {}", CPU_PLUGIN.wheel_file);
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        wheel: Some(wheel),
        offline: true,
        ..Config::with_cache_root(tmp.path())
    };
    let p = provision_with(&cfg, &CPU_PLUGIN).unwrap();
    assert_eq!(p.source, Source::Wheel);
    assert_eq!(p.sha256.as_deref(), Some(CPU_PLUGIN.plugin_sha256));
    assert!(find_cached(tmp.path(), &CPU_PLUGIN).is_some());
}
