//! The safe PJRT layer against the real pinned CPU plugin (no mocks).

mod common;

// mimalloc in place of malloc for this test binary (see the allocator test below).
use libmimalloc_sys as _;

use common::{another_plugin, client};
use nlsq::pjrt::{Buffer, Client, LoadedExecutable};
use nlsq::{DType, Error, PjrtCode};

const SQUARE_SUM_F64: &str = r#"
func.func @main(%x: tensor<2x3xf64>) -> (tensor<2x3xf64>, tensor<f64>) {
  %sq = stablehlo.multiply %x, %x : tensor<2x3xf64>
  %zero = stablehlo.constant dense<0.0> : tensor<f64>
  %sum = stablehlo.reduce(%sq init: %zero) applies stablehlo.add across dimensions = [0, 1] : (tensor<2x3xf64>, tensor<f64>) -> tensor<f64>
  return %sq, %sum : tensor<2x3xf64>, tensor<f64>
}
"#;

const SCALE_F32: &str = r#"
func.func @main(%x: tensor<4xf32>, %s: tensor<f32>) -> tensor<4xf32> {
  %b = stablehlo.broadcast_in_dim %s, dims = [] : (tensor<f32>) -> tensor<4xf32>
  %y = stablehlo.multiply %x, %b : tensor<4xf32>
  %e = stablehlo.exponential %y : tensor<4xf32>
  return %e : tensor<4xf32>
}
"#;

/// sum_{i<n} i computed with a while loop.
const WHILE_SUM: &str = r#"
func.func @main(%n: tensor<i64>) -> (tensor<i64>, tensor<i64>) {
  %c0 = stablehlo.constant dense<0> : tensor<i64>
  %c1 = stablehlo.constant dense<1> : tensor<i64>
  %r:2 = stablehlo.while(%i = %c0, %acc = %c0) : tensor<i64>, tensor<i64>
    cond {
      %lt = stablehlo.compare LT, %i, %n : (tensor<i64>, tensor<i64>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %acc2 = stablehlo.add %acc, %i : tensor<i64>
      %i2 = stablehlo.add %i, %c1 : tensor<i64>
      stablehlo.return %i2, %acc2 : tensor<i64>, tensor<i64>
    }
  return %r#0, %r#1 : tensor<i64>, tensor<i64>
}
"#;

const ROUND_TRIP: &str = r#"
func.func @main(%a: tensor<3x2xf64>, %b: tensor<2x2xi32>, %c: tensor<3xi1>, %d: tensor<2xi64>) -> (tensor<3x2xf64>, tensor<2x2xi32>, tensor<3xi1>, tensor<2xi64>) {
  return %a, %b, %c, %d : tensor<3x2xf64>, tensor<2x2xi32>, tensor<3xi1>, tensor<2xi64>
}
"#;

fn compile(c: &Client, text: &str) -> LoadedExecutable {
    c.compile(text).unwrap_or_else(|e| panic!("compile failed: {e}"))
}

#[test]
fn client_reports_platform_and_devices() {
    let c = client();
    assert!(!c.platform_version().is_empty());
    let devices = c.devices();
    assert!(!devices.is_empty());
    let (major, minor) = c.plugin().api_version();
    if another_plugin() {
        // A GPU/TPU plugin: only the C API major version is nlsq's.
        assert_eq!(major, 0);
    } else {
        assert_eq!(c.platform_name(), "cpu");
        assert!(
            devices.iter().all(|d| d.kind().to_lowercase().contains("cpu")),
            "{devices:?}"
        );
        assert_eq!((major, minor), (0, 81));
    }
    let attrs = c.plugin().attributes().unwrap();
    assert!(attrs.iter().any(|(k, _)| k == "stablehlo_current_version"), "{attrs:?}");
}

#[test]
fn elementwise_and_reduction_f64() {
    let c = client();
    let exe = compile(&c, SQUARE_SUM_F64);
    assert_eq!(exe.num_outputs(), 2);
    let x = c
        .buffer_from_host(&[1.0f64, -2.0, 3.0, 0.5, 1e-3, 7.0], &[2, 3])
        .unwrap();
    let out = exe.execute(&[&x]).unwrap();
    assert_eq!(out[0].dims().unwrap(), vec![2, 3]);
    assert_eq!(out[0].to_vec::<f64>().unwrap(), vec![1.0, 4.0, 9.0, 0.25, 1e-6, 49.0]);
    assert_eq!(out[1].dims().unwrap(), Vec::<i64>::new());
    let s = out[1].to_vec::<f64>().unwrap()[0];
    assert!((s - 63.250001).abs() < 1e-12, "{s}");
}

#[test]
fn lent_host_vectors_compute_like_copies_and_outlive_nothing() {
    use nlsq::pjrt::HostVec;
    let c = client();
    let exe = compile(&c, SQUARE_SUM_F64);
    let data = [1.0f64, -2.0, 3.0, 0.5, 1e-3, 7.0];
    let lent = HostVec::from(&data[..]);
    assert_eq!(lent.as_slice(), &data[..]);
    assert_eq!(
        lent.as_slice().as_ptr() as usize % 64,
        0,
        "HostVec data are 64-byte aligned"
    );
    let x = c.buffer_from_host_vec(lent, &[2, 3]).unwrap();
    let out = exe.execute(&[&x]).unwrap();
    assert_eq!(out[0].to_vec::<f64>().unwrap(), vec![1.0, 4.0, 9.0, 0.25, 1e-6, 49.0]);
    // The lent buffer reads back its own values, and can be used again.
    assert_eq!(x.to_vec::<f64>().unwrap(), data.to_vec());
    let again = exe.execute(&[&x]).unwrap();
    assert_eq!(again[1].to_vec::<f64>().unwrap(), out[1].to_vec::<f64>().unwrap());
    drop(x);
    // A large lent array, dropped while outputs computed from it live on.
    let n = 1 << 20;
    let mut big = HostVec::filled(n, 0.0f64);
    for (i, v) in big.as_mut_slice().iter_mut().enumerate() {
        *v = i as f64;
    }
    let b = c.buffer_from_host_vec(big, &[n as i64]).unwrap();
    assert_eq!(b.to_vec::<f64>().unwrap()[n - 1], (n - 1) as f64);
    drop(b);
    // Wrong element count: an error before PJRT.
    assert!(c.buffer_from_host_vec(HostVec::filled(5, 0.0f64), &[2, 3]).is_err());
}

#[test]
fn elementwise_f32_with_scalar_argument() {
    let c = client();
    let exe = compile(&c, SCALE_F32);
    let x = c.buffer_from_host(&[0.0f32, 1.0, -1.0, 2.0], &[4]).unwrap();
    let s = c.buffer_from_host(&[0.5f32], &[]).unwrap();
    let out = exe.execute(&[&x, &s]).unwrap();
    assert_eq!(out[0].dtype().unwrap(), DType::F32);
    let got = out[0].to_vec::<f32>().unwrap();
    for (g, x) in got.iter().zip([0.0f32, 1.0, -1.0, 2.0]) {
        assert!(
            (g - (0.5 * x).exp()).abs() <= 1e-6 * g.abs(),
            "{g} vs {}",
            (0.5 * x).exp()
        );
    }
}

#[test]
fn while_loop_with_several_outputs() {
    let c = client();
    let exe = compile(&c, WHILE_SUM);
    for n in [0i64, 1, 10, 1000] {
        let nb = c.buffer_from_host(&[n], &[]).unwrap();
        let out = exe.execute(&[&nb]).unwrap();
        assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![n]);
        assert_eq!(out[1].to_vec::<i64>().unwrap(), vec![n * (n - 1) / 2]);
    }
}

#[test]
fn buffers_of_every_dtype_round_trip_exactly() {
    let c = client();
    let exe = compile(&c, ROUND_TRIP);
    let a_data = [1.5f64, -0.0, f64::MAX, f64::MIN_POSITIVE, 1e-300, -7.25];
    let a = c.buffer_from_host(&a_data, &[3, 2]).unwrap();
    let b = c.buffer_from_host(&[i32::MIN, -1, 0, i32::MAX], &[2, 2]).unwrap();
    let cc = c.buffer_from_host(&[true, false, true], &[3]).unwrap();
    let d = c.buffer_from_host(&[i64::MIN, i64::MAX], &[2]).unwrap();
    let out = exe.execute(&[&a, &b, &cc, &d]).unwrap();
    let got = out[0].to_vec::<f64>().unwrap();
    assert!(
        got.iter().zip(a_data).all(|(g, e)| g.to_bits() == e.to_bits()),
        "{got:?}"
    );
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![i32::MIN, -1, 0, i32::MAX]);
    assert_eq!(out[2].to_vec::<bool>().unwrap(), vec![true, false, true]);
    assert_eq!(out[3].to_vec::<i64>().unwrap(), vec![i64::MIN, i64::MAX]);
    assert_eq!(out[0].dims().unwrap(), vec![3, 2]);
    let arr = out[0].to_array::<f64>().unwrap();
    assert_eq!(arr.shape(), &[3, 2]);
    assert_eq!(arr[[2, 1]], -7.25);
}

#[test]
fn invalid_mlir_is_an_error_with_the_compiler_message() {
    let c = client();
    let err = c
        .compile(
            "func.func @main(%x: tensor<2xf64>) -> tensor<2xf64> { %y = stablehlo.bogus %x : tensor<2xf64> return %y }",
        )
        .unwrap_err();
    match &err {
        Error::Pjrt {
            function,
            code,
            message,
            ..
        } => {
            assert_eq!(*function, "PJRT_Client_Compile");
            // The pinned plugin reports parse failures as Unknown; others use InvalidArgument.
            assert!(matches!(code, PjrtCode::Unknown | PjrtCode::InvalidArgument), "{err}");
            assert!(message.contains("stablehlo.bogus"), "{message}");
        }
        other => panic!("expected a PJRT error, got {other}"),
    }
    // A non-StableHLO op and a type error are rejected the same way.
    assert!(c.compile("func.func @main(%x: tensor<2xf64>) -> tensor<2xf64> { %y = stablehlo.copy %x : tensor<2xf64>\n return %y : tensor<2xf64> }").is_err());
    assert!(c
        .compile("func.func @main(%x: tensor<2xf64>) -> tensor<3xf64> { return %x : tensor<2xf64> }")
        .is_err());
    assert!(matches!(c.compile("   ").unwrap_err(), Error::InvalidArgument { .. }));
    // The client still works afterwards.
    let exe = compile(&c, SQUARE_SUM_F64);
    let x = c.buffer_from_host(&[1.0f64; 6], &[2, 3]).unwrap();
    assert_eq!(exe.execute(&[&x]).unwrap()[1].to_vec::<f64>().unwrap(), vec![6.0]);
}

#[test]
fn wrong_arguments_are_rejected_before_pjrt() {
    let c = client();
    let exe = compile(&c, SCALE_F32);
    let x = c.buffer_from_host(&[0.0f32; 4], &[4]).unwrap();
    let s = c.buffer_from_host(&[1.0f32], &[]).unwrap();
    let wrong_dtype = c.buffer_from_host(&[1.0f64], &[]).unwrap();
    let wrong_shape = c.buffer_from_host(&[0.0f32; 4], &[2, 2]).unwrap();
    let is_invalid = |r: nlsq::Result<Vec<Buffer>>, needle: &str| match r {
        Err(Error::InvalidArgument {
            what: "execute",
            reason,
        }) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    is_invalid(exe.execute(&[&x]), "expected 2 arguments, got 1");
    is_invalid(exe.execute(&[&x, &s, &s]), "expected 2 arguments, got 3");
    is_invalid(
        exe.execute(&[&x, &wrong_dtype]),
        "argument 1 is f64[] but the program expects f32[]",
    );
    is_invalid(
        exe.execute(&[&wrong_shape, &s]),
        "argument 0 is f32[2, 2] but the program expects f32[4]",
    );
    // Host data that does not fill the shape.
    assert!(matches!(
        c.buffer_from_host(&[1.0f64; 5], &[2, 3]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        c.buffer_from_host(&[1.0f64; 0], &[-1]),
        Err(Error::InvalidArgument { .. })
    ));
    // Reading with the wrong type.
    assert!(matches!(
        x.to_vec::<f64>(),
        Err(Error::BufferDType {
            actual: DType::F32,
            requested: DType::F64
        })
    ));
    // Correct arguments still work.
    assert_eq!(
        exe.execute(&[&x, &s]).unwrap()[0].to_vec::<f32>().unwrap(),
        vec![1.0; 4]
    );
}

#[test]
fn serialize_then_deserialize_gives_identical_results() {
    let c = client();
    let exe = compile(&c, SQUARE_SUM_F64);
    let bytes = exe.serialize().unwrap();
    let loaded = c.deserialize(&bytes).unwrap();
    assert_eq!(loaded.num_outputs(), 2);
    assert_eq!(loaded.signature(), exe.signature());
    let data = [0.1f64, 0.2, 0.3, 1e10, -3.5, 2.0];
    let x = c.buffer_from_host(&data, &[2, 3]).unwrap();
    let a = exe.execute(&[&x]).unwrap();
    let b = loaded.execute(&[&x]).unwrap();
    for (p, q) in a.iter().zip(&b) {
        let (p, q) = (p.to_vec::<f64>().unwrap(), q.to_vec::<f64>().unwrap());
        assert!(p.iter().zip(&q).all(|(u, v)| u.to_bits() == v.to_bits()));
    }
    // The signature travels with the bytes, so argument checks still apply.
    let wrong = c.buffer_from_host(&[1.0f64; 6], &[6]).unwrap();
    assert!(matches!(loaded.execute(&[&wrong]), Err(Error::InvalidArgument { .. })));
}

#[test]
fn a_deserialized_executable_serializes_to_bytes_that_run() {
    // The plugin's own serialization of a deserialized executable drops the machine code (what
    // it loads fails at execution); ours hands back the bytes it was loaded from.
    let c = client();
    let bytes = compile(&c, SQUARE_SUM_F64).serialize().unwrap();
    let again = c.deserialize(&bytes).unwrap().serialize().unwrap();
    assert_eq!(again, bytes);
    // Loaded on another client of the same plugin, it runs and agrees.
    let other = nlsq::runtime::plugin().unwrap().create_client(&[]).unwrap();
    let loaded = other.deserialize(&again).unwrap();
    let data = [0.1f64, 0.2, 0.3, 1e10, -3.5, 2.0];
    let out = loaded
        .execute(&[&other.buffer_from_host(&data, &[2, 3]).unwrap()])
        .unwrap();
    let mine = c
        .deserialize(&bytes)
        .unwrap()
        .execute(&[&c.buffer_from_host(&data, &[2, 3]).unwrap()])
        .unwrap();
    for (p, q) in out.iter().zip(&mine) {
        assert_eq!(p.to_vec::<f64>().unwrap(), q.to_vec::<f64>().unwrap());
    }
}

#[test]
fn garbage_serialized_bytes_are_errors() {
    let c = client();
    assert!(matches!(
        c.deserialize(b"not an executable"),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(c.deserialize(b"NLSQEXE1"), Err(Error::InvalidArgument { .. })));
    let mut bytes = compile(&c, SQUARE_SUM_F64).serialize().unwrap();
    // Truncate the PJRT payload: the plugin must reject it with an error (not a crash).
    bytes.truncate(bytes.len() / 2);
    assert!(c.deserialize(&bytes).is_err());
}

/// This test binary links mimalloc itself (as the `nlsq` binary does) and exports `mi_malloc`
/// (build.rs): `process_malloc` finds that `malloc` in this process, the one the plugin's calls
/// bind to, is mimalloc's, without the library's `mimalloc` feature.
#[test]
fn the_process_malloc_is_the_mimalloc_the_executable_links() {
    assert_eq!(nlsq::pjrt::process_malloc(), "mimalloc");
}

/// An execution still running when it is awaited (tens of milliseconds of loop): the waiting
/// thread sleeps until the plugin's ready callback wakes it, and reads the right result.
#[test]
fn a_long_execution_is_awaited_until_it_completes() {
    let c = client();
    let exe = compile(&c, WHILE_SUM);
    // A GPU runs a scalar loop's iterations a kernel launch and a host round trip apiece (on an
    // H100 with jax's CUDA plugin, 3 x 30 million iterations did not end within 150 s), so it
    // gets fewer.
    let n = if common::another_plugin() { 3_000 } else { 30_000_000i64 };
    let nb = c.buffer_from_host(&[n], &[]).unwrap();
    for _ in 0..3 {
        let out = exe.execute(&[&nb]).unwrap();
        assert_eq!(out[1].to_vec::<i64>().unwrap(), vec![n * (n - 1) / 2]);
    }
}

#[test]
fn two_threads_execute_one_executable_concurrently() {
    let c = client();
    let exe = compile(&c, WHILE_SUM);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (c, exe) = (&c, &exe);
                s.spawn(move || {
                    for k in 0..200i64 {
                        let n = 100 * t + k;
                        let nb = c.buffer_from_host(&[n], &[]).unwrap();
                        let out = exe.execute(&[&nb]).unwrap();
                        assert_eq!(out[1].to_vec::<i64>().unwrap()[0], n * (n - 1) / 2);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<Buffer>();
    assert_send_sync::<LoadedExecutable>();
}

/// A client with two CPU devices (`cpu_device_count`): a portable executable runs on either,
/// with its inputs on that device, from two threads at once; an ordinary one only on the device
/// it was built for, and another device is an error, not a crash.
#[test]
fn portable_executables_run_on_every_cpu_device() {
    use nlsq::pjrt::{CompileOptions, NamedValue};
    if another_plugin() {
        // `cpu_device_count` is an option of the CPU plugin.
        return;
    }
    let plugin = nlsq::runtime::plugin().unwrap();
    let c = plugin
        .create_client(&[("cpu_device_count", NamedValue::I64(2))])
        .unwrap();
    assert_eq!(c.devices().len(), 2);
    let portable = CompileOptions {
        portable: true,
        ..CompileOptions::default()
    };
    let exe = c.compile_with(WHILE_SUM, &portable).unwrap();
    std::thread::scope(|s| {
        for d in 0..2usize {
            let (c, exe) = (&c, &exe);
            s.spawn(move || {
                let devices = c.devices();
                for k in 0..50i64 {
                    let n = 1000 * d as i64 + k;
                    let nb = c.buffer_from_host_on(&devices[d], &[n], &[]).unwrap();
                    let out = exe.execute_on(&devices[d], &[&nb]).unwrap();
                    assert_eq!(out[1].to_vec::<i64>().unwrap()[0], n * (n - 1) / 2);
                }
            });
        }
    });
    let fixed = c.compile(WHILE_SUM).unwrap();
    let devices = c.devices();
    let nb = c.buffer_from_host_on(&devices[1], &[5i64], &[]).unwrap();
    assert!(matches!(fixed.execute_on(&devices[1], &[&nb]), Err(Error::Pjrt { .. })));
}

#[cfg(target_os = "linux")]
#[test]
fn cpu_workers_have_one_device_and_thread_pools_pinned_to_their_cpu() {
    let workers = nlsq::runtime::cpu_workers().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |k| k.get());
    if cores < 2 || std::env::var("NLSQ_PIN_THREADS").is_ok_and(|v| v == "0") || another_plugin() {
        assert!(workers.is_empty());
        return;
    }
    assert_eq!(
        workers.len(),
        cores.min(nlsq::pjrt::affinity::allowed_cpus().unwrap().len())
    );
    // The caller's thread is not pinned.
    assert!(nlsq::pjrt::affinity::allowed_cpus().unwrap().len() >= 2);
    let pinned_threads = |cpu: usize| {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
            .filter(|status| {
                status
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", &cpu.to_string()])
            })
            .count()
    };
    for w in workers {
        assert_eq!(w.client.devices().len(), 1);
        // The plugin's pools for this client (created by a thread pinned to `cpu`) run there only.
        assert!(
            pinned_threads(w.cpu) >= 2,
            "CPU {}: {} pinned threads",
            w.cpu,
            pinned_threads(w.cpu)
        );
    }
}
