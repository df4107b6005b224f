//! Shared helpers of the integration tests.
#![allow(dead_code)]

use nlsq::pjrt::Client;

/// The process-wide client. A missing plugin is a test failure carrying the provisioning
/// error, never a silent skip.
pub fn client() -> Client {
    match nlsq::runtime::client() {
        Ok(c) => c,
        Err(e) => panic!("cannot get the PJRT client: {e}"),
    }
}

/// True when `NLSQ_PJRT_PLUGIN` names another plugin than the pinned CPU plugin (a GPU run of
/// the suite): tests of CPU-plugin options skip, and tests of bitwise equality across program
/// shapes compare to a tolerance instead.
pub fn another_plugin() -> bool {
    std::env::var_os("NLSQ_PJRT_PLUGIN").is_some_and(|v| !v.is_empty())
}

/// `m` points of `y = 2.5 exp(-1.3 x) + 0.5` on `[0, 4)` with deterministic pseudo-noise of
/// amplitude 0.01: the 3-parameter decay the end-to-end tests fit.
pub fn noisy_exp(m: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, x)| 2.5 * (-1.3 * x).exp() + 0.5 + 0.01 * ((i as f64 * 12.9898).sin() * 43758.5453).fract())
        .collect();
    (x, y)
}

/// What a child test process printed after `marker` on its first line that has it; a child
/// that failed (a panic, a signal) or printed no such line is a test failure showing its output.
pub fn child_line(o: &std::process::Output, marker: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "child failed ({:?}): {out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .find_map(|l| l.find(marker).map(|i| l[i + marker.len()..].to_string()))
        .unwrap_or_else(|| panic!("no {marker} line in {out}"))
}
