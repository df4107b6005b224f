//! Memory statistics of compiled programs and of devices, from the real pinned CPU plugin.

mod common;

use common::{another_plugin, client};

/// `sq = x * x` and `sum(exp(sq) + x)` over `[m]`: arguments, results and scratch memory in
/// proportion to `m`.
fn program(m: usize) -> String {
    format!(
        r#"
func.func @main(%x: tensor<{m}xf64>) -> (tensor<{m}xf64>, tensor<f64>) {{
  %sq = stablehlo.multiply %x, %x : tensor<{m}xf64>
  %e = stablehlo.exponential %sq : tensor<{m}xf64>
  %t = stablehlo.add %e, %x : tensor<{m}xf64>
  %zero = stablehlo.constant dense<0.0> : tensor<f64>
  %sum = stablehlo.reduce(%t init: %zero) applies stablehlo.add across dimensions = [0] : (tensor<{m}xf64>, tensor<f64>) -> tensor<f64>
  return %sq, %sum : tensor<{m}xf64>, tensor<f64>
}}
"#
    )
}

#[test]
fn compiled_memory_stats_grow_with_the_data_and_survive_serialization() {
    let c = client();
    let stats = |m: usize| {
        let exe = c.compile(&program(m)).unwrap();
        let stats = exe
            .memory_stats()
            .unwrap()
            .expect("the CPU plugin reports memory stats");
        // Asked again: the same figures (kept with the executable).
        assert_eq!(exe.memory_stats().unwrap(), Some(stats));
        let loaded = c.deserialize(&exe.serialize().unwrap()).unwrap();
        assert_eq!(loaded.memory_stats().unwrap(), Some(stats), "deserialized");
        stats
    };
    let (small, large) = (stats(1_000), stats(100_000));
    for (m, s) in [(1_000u64, small), (100_000, large)] {
        let array = 8 * m;
        // One f64 argument of m elements; results: an array of m and a scalar (and, on the
        // CPU plugin, the table of the result tuple).
        assert_eq!(s.argument_bytes, array, "{s:?}");
        if another_plugin() {
            // Another compiler may fuse away the scratch and lay out results otherwise.
            continue;
        }
        assert!(s.output_bytes >= array + 8 && s.output_bytes < array + 1024, "{s:?}");
        assert_eq!(s.alias_bytes, 0, "{s:?}");
        // exp(sq) + x needs at least one array of scratch on XLA:CPU.
        assert!(s.temp_bytes >= array && s.temp_bytes < 4 * array + 4096, "{s:?}");
        assert_eq!(s.execution_bytes(), s.output_bytes + s.temp_bytes);
        assert_eq!(
            s.device_bytes(),
            s.generated_code_bytes + s.argument_bytes + s.output_bytes + s.temp_bytes
        );
    }
    assert!(large.device_bytes() > 50 * small.device_bytes(), "{small:?} {large:?}");
}

#[test]
fn cpu_devices_report_no_memory_stats() {
    if another_plugin() {
        return;
    }
    // The pinned plugin answers PJRT_Device_MemoryStats with "GetAllocatorStats is not
    // supported" (Unimplemented): no figures, not an error.
    for d in client().devices() {
        assert_eq!(d.memory_stats().unwrap(), None, "{d}");
    }
}
