//! Leak check of the PJRT handles: its own test binary, so no other test changes the
//! process's resident memory while it measures.

mod common;

use common::client;

const SQUARE_SUM_F64: &str = r#"
func.func @main(%x: tensor<2x3xf64>) -> (tensor<2x3xf64>, tensor<f64>) {
  %sq = stablehlo.multiply %x, %x : tensor<2x3xf64>
  %zero = stablehlo.constant dense<0.0> : tensor<f64>
  %sum = stablehlo.reduce(%sq init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<2x3xf64>, tensor<f64>) -> tensor<f64>
  return %sq, %sum : tensor<2x3xf64>, tensor<f64>
}
"#;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn create_execute_drop_cycles_do_not_leak() {
    let c = client();
    let exe = c.compile(SQUARE_SUM_F64).unwrap();
    let data = [1.0f64; 6];
    let cycle = || {
        let x = c.buffer_from_host(&data, &[2, 3]).unwrap();
        let out = exe.execute(&[&x]).unwrap();
        assert_eq!(out[1].to_vec::<f64>().unwrap()[0], 6.0);
    };
    // Warm up allocator pools and thread-local caches before the baseline.
    for _ in 0..2_000 {
        cycle();
    }
    let before = resident_kib();
    for _ in 0..10_000 {
        cycle();
    }
    let after = resident_kib();
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!("resident memory: {before} KiB before, {after} KiB after 10,000 cycles");
    assert!(
        growth_mib < 4.0,
        "resident memory grew by {growth_mib:.1} MiB over 10,000 cycles"
    );
}
