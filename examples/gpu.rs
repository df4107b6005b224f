//! Fitting on a GPU (or any other PJRT device): point `NLSQ_PJRT_PLUGIN` at the plugin.
//!
//! ```sh
//! NLSQ_PJRT_PLUGIN=/path/to/xla_cuda_plugin.so cargo run --release --example gpu
//! NLSQ_PJRT_PLUGIN=... cargo run --release --example gpu -- --memory-fraction 0.5
//! ```
//!
//! Every fit runs on the process-wide default client (`nlsq::runtime::client()`), which
//! loads the plugin named by `NLSQ_PJRT_PLUGIN` and creates a client with nlsq's default
//! options for it (`preallocate=false` for CUDA) and those of `NLSQ_PJRT_CLIENT_OPTIONS`
//! (e.g. `NLSQ_PJRT_CLIENT_OPTIONS=memory_fraction=0.5`). `--memory-fraction F` also shows how
//! to create a client of your own with create options
//! (`Plugin::load(path)?.create_client(&[("memory_fraction", NamedValue::F32(F))])`): it lists
//! that client's devices and drops it before the fits (the fits cannot use it: see the note
//! printed at the end). Without `NLSQ_PJRT_PLUGIN` the example explains where to get
//! a CUDA plugin and exits successfully.

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::pjrt::{NamedValue, Plugin};
use nlsq::solve::Method;

const HOW_TO: &str = r#"NLSQ_PJRT_PLUGIN is not set, so there is no GPU plugin to load (fits use the CPU plugin).

To fit on an NVIDIA GPU, use the CUDA PJRT plugin that JAX ships as the jax-cuda12-pjrt
(or jax-cuda13-pjrt) wheel. Installing JAX's CUDA extra brings the plugin together with the
CUDA libraries it loads at run time (nvidia-* wheels); it needs a recent NVIDIA driver:

    python3 -m venv /tmp/pjrt && /tmp/pjrt/bin/pip install "jax[cuda12]"
    export NLSQ_PJRT_PLUGIN=$(ls /tmp/pjrt/lib/python3*/site-packages/jax_plugins/xla_cuda12/xla_cuda_plugin.so)
    cargo run --release --example gpu [-- --memory-fraction 0.5]

(`pip install jax-cuda12-pjrt` alone gives the plugin without the CUDA libraries: then a
system CUDA 12 install must be on the library path.) Any other PJRT plugin works the same
way: a ROCm plugin, or libtpu.so on a TPU. The plugin's C API major version must match
nlsq's (see README)."#;

/// A small deterministic pseudo-random generator (xorshift64*) and Box–Muller normals.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

/// `--memory-fraction F`, if given.
fn memory_fraction_arg() -> Result<Option<f32>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(None),
        [flag, v] if flag == "--memory-fraction" => match v.parse::<f32>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Ok(Some(f)),
            _ => Err(format!("--memory-fraction {v}: must be a number in (0, 1]")),
        },
        _ => Err("usage: gpu [--memory-fraction F]".into()),
    }
}

fn main() -> Result<()> {
    let memory_fraction = memory_fraction_arg().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let Some(path) = std::env::var_os("NLSQ_PJRT_PLUGIN").map(PathBuf::from) else {
        println!("{HOW_TO}");
        return Ok(());
    };

    let t0 = Instant::now();
    let plugin = Plugin::load(&path).with_context(|| format!("loading NLSQ_PJRT_PLUGIN={}", path.display()))?;
    let (major, minor) = plugin.api_version();
    println!(
        "plugin {} (PJRT C API {major}.{minor}), loaded in {:.1} ms",
        plugin.path().display(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    if let Ok(attributes) = plugin.attributes() {
        for (name, value) in attributes {
            println!("  {name} = {value:?}");
        }
    }

    if let Some(fraction) = memory_fraction {
        // A client with create options of our own. GPU plugins take `memory_fraction` (F32) and
        // `preallocate` (Bool), among others; the CPU plugin ignores them.
        let options = [
            ("memory_fraction", NamedValue::F32(fraction)),
            ("preallocate", NamedValue::Bool(false)),
        ];
        let own = plugin
            .create_client(&options)
            .context("creating a client with create options")?;
        println!(
            "\nown client (memory_fraction {fraction}, preallocate false): platform {} {}",
            own.platform_name(),
            own.platform_version()
        );
        for d in own.devices() {
            println!("  device {} kind {:?}: {}", d.id(), d.kind(), d.description());
        }
        drop(own);
    }

    // The default client: the one every fit runs on.
    let t1 = Instant::now();
    let client = nlsq::runtime::client().context("creating the default client")?;
    println!(
        "\ndefault client: platform {} {}, created in {:.1} ms",
        client.platform_name(),
        client.platform_version(),
        t1.elapsed().as_secs_f64() * 1e3
    );
    for d in client.devices() {
        println!("  device {} kind {:?}: {}", d.id(), d.kind(), d.description());
    }

    // An exponential decay at 1,000,000 points: the first fit compiles for this device (or
    // loads from the disk cache, keyed by the plugin), the second reuses the executable.
    let m = 1_000_000;
    let mut rng = Rng(0x6E0_5EED);
    let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / (m - 1) as f64).collect();
    let y: Vec<f64> = x
        .iter()
        .map(|&x| 2.5 * (-1.3 * x).exp() + 0.5 + 0.05 * rng.normal())
        .collect();
    let p0 = [1.0, 1.0, 1.0];
    for method in [Method::Lm, Method::Trf] {
        let options = FitOptions::default().with_method(method);
        let first = curve_fit(&model, &x, &y, Some(&p0), &options)?;
        let warm = curve_fit(&model, &x, &y, Some(&p0), &options)?;
        let t = warm.result.timings;
        println!(
            "\n{method} at {m} points on {}: popt {:.6} ± {:.1e}",
            warm.result.device, warm.popt, warm.perr
        );
        println!(
            "  first fit {:.1} ms (executable {} in {:.1} ms); warm fit {:.2} ms (execute {:.2} ms), {}",
            first.result.timings.total.as_secs_f64() * 1e3,
            first.result.executable,
            first.result.timings.compile.as_secs_f64() * 1e3,
            t.total.as_secs_f64() * 1e3,
            t.execute.as_secs_f64() * 1e3,
            warm.result.status
        );
    }
    if memory_fraction.is_some() {
        println!(
            "\nnote: the fits above ran on the default client; curve_fit cannot be handed a client \
             of your own, but NLSQ_PJRT_CLIENT_OPTIONS sets the default client's create options."
        );
    }
    Ok(())
}
