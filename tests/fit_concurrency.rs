//! Fits from many threads at once: each result is bitwise the one a sequential fit gives, and
//! repeated fits do not grow the process.

mod common;

use common::noisy_exp;
use nlsq::fit::{curve_fit, CurveFit, CurveFitter, FitOptions};
use nlsq::graph::{Params, Tensor};

fn model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

/// Dataset `i`: the decay with its y shifted and scaled by `i`.
fn dataset(i: usize) -> (Vec<f64>, Vec<f64>) {
    let (x, y) = noisy_exp(300);
    let s = 1.0 + 0.1 * i as f64;
    (x, y.iter().map(|v| v * s + 0.01 * i as f64).collect())
}

/// Held by each test: they measure the process (its resident size, which device is free), so
/// they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(f: &CurveFit) -> Vec<u64> {
    f.popt
        .iter()
        .chain(f.pcov.iter())
        .map(|v| v.to_bits())
        .chain([f.result.nfev as u64])
        .collect()
}

#[test]
fn threads_fitting_through_curve_fit_and_a_shared_fitter_match_sequential_fits_bitwise() {
    let _serial = one_at_a_time();
    let opts = FitOptions::default();
    let p0 = [1.0, 1.0, 1.0];
    let sequential: Vec<Vec<u64>> = (0..16)
        .map(|i| {
            let (x, y) = dataset(i);
            key(&curve_fit(&model, &x, &y, Some(&p0), &opts).unwrap())
        })
        .collect();
    let fitter = CurveFitter::builder(model).capacity(300).params(3).build().unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (fitter, opts, sequential) = (&fitter, &opts, &sequential);
                s.spawn(move || {
                    for round in 0..4 {
                        let i = (t * 2 + round) % 16;
                        let (x, y) = dataset(i);
                        let free = curve_fit(&model, &x, &y, Some(&p0), opts).unwrap();
                        assert_eq!(key(&free), sequential[i], "curve_fit, thread {t}, dataset {i}");
                        let shared = fitter.fit(&x, &y, Some(&p0)).unwrap();
                        assert_eq!(key(&shared), sequential[i], "shared fitter, thread {t}, dataset {i}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// Resident set size of this process, bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_thousand_repeated_fits_leave_the_resident_size_flat() {
    let _serial = one_at_a_time();
    let (x, y) = dataset(3);
    let fitter = CurveFitter::builder(model).capacity(300).params(3).build().unwrap();
    let opts = FitOptions::default();
    // Warm up: allocator pools and caches reach their steady state.
    for _ in 0..100 {
        fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])).unwrap();
        curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
    }
    let before = rss();
    for _ in 0..500 {
        fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])).unwrap();
        curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
    }
    let grown = rss().saturating_sub(before);
    // 1,000 fits; a leak of one buffer of the 300-point problem per fit would be 2.4 MB.
    assert!(grown < 2 << 20, "RSS grew by {grown} bytes over 1,000 fits");
}

#[test]
fn fits_lease_the_least_busy_device_and_agree_bitwise_on_every_device() {
    let _serial = one_at_a_time();
    let client = nlsq::runtime::client().unwrap();
    let devices = client.devices().len();
    // Leases take the least busy device, first on a tie, and end when dropped.
    let first = client.lease_device().unwrap();
    assert_eq!(first.to_string(), client.devices()[0].to_string());
    let second = client.lease_device().unwrap();
    assert_eq!(second.to_string(), client.devices()[1 % devices].to_string());
    drop(second);
    drop(first);
    assert_eq!(
        client.lease_device().unwrap().to_string(),
        client.devices()[0].to_string()
    );
    // A fit runs on the device nobody holds, and gives the same bits there.
    let (x, y) = dataset(3);
    let opts = FitOptions::default();
    let p0 = [1.0, 1.0, 1.0];
    let on_first = curve_fit(&model, &x, &y, Some(&p0), &opts).unwrap();
    assert_eq!(on_first.result.device, client.devices()[0].to_string());
    let held: Vec<_> = (0..devices - 1).map(|_| client.lease_device().unwrap()).collect();
    let on_last = curve_fit(&model, &x, &y, Some(&p0), &opts).unwrap();
    assert_eq!(on_last.result.device, client.devices()[devices - 1].to_string());
    drop(held);
    assert_eq!(key(&on_last), key(&on_first));
}
