//! Quickstart: loads the PJRT runtime (provisioning the pinned CPU plugin on first use), prints
//! the platform and its devices, compiles a small StableHLO program (a Gauss–Newton style
//! while loop computing sqrt(a) by Newton's iteration), runs it and checks the answer.
//!
//! Run with `cargo run --release --example quickstart`. Curve fitting arrives with the solver.

use std::time::Instant;

use anyhow::{ensure, Context, Result};

const NEWTON_SQRT: &str = r#"
func.func @main(%a: tensor<4xf64>) -> (tensor<4xf64>, tensor<i64>) {
  %zero = stablehlo.constant dense<0> : tensor<i64>
  %one = stablehlo.constant dense<1> : tensor<i64>
  %iters = stablehlo.constant dense<60> : tensor<i64>
  %half = stablehlo.constant dense<0.5> : tensor<4xf64>
  %r:2 = stablehlo.while(%i = %zero, %x = %a) : tensor<i64>, tensor<4xf64>
    cond {
      %lt = stablehlo.compare LT, %i, %iters : (tensor<i64>, tensor<i64>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %q = stablehlo.divide %a, %x : tensor<4xf64>
      %s = stablehlo.add %x, %q : tensor<4xf64>
      %x2 = stablehlo.multiply %s, %half : tensor<4xf64>
      %i2 = stablehlo.add %i, %one : tensor<i64>
      stablehlo.return %i2, %x2 : tensor<i64>, tensor<4xf64>
    }
  return %r#1, %r#0 : tensor<4xf64>, tensor<i64>
}
"#;

fn main() -> Result<()> {
    let t0 = Instant::now();
    let client = nlsq::runtime::client().context("starting the PJRT runtime")?;
    let load = t0.elapsed();
    let plugin = client.plugin();
    println!("plugin    {} (PJRT C API {}.{})", plugin.path().display(), plugin.api_version().0, plugin.api_version().1);
    println!("platform  {} {}", client.platform_name(), client.platform_version());
    for d in client.devices() {
        println!("device    {d}");
    }

    let t1 = Instant::now();
    let exe = client.compile(NEWTON_SQRT)?;
    let compile = t1.elapsed();
    let a = [2.0f64, 9.0, 1e-6, 12345.678];
    let input = client.buffer_from_host(&a, &[4])?;
    let t2 = Instant::now();
    let out = exe.execute(&[&input])?;
    let roots = out[0].to_vec::<f64>()?;
    let execute = t2.elapsed();
    let iterations = out[1].to_vec::<i64>()?[0];

    println!("\nNewton iteration for sqrt inside one stablehlo.while ({iterations} iterations):");
    for (x, r) in a.iter().zip(&roots) {
        println!("  sqrt({x:<10}) = {r:.15}   (std: {:.15})", x.sqrt());
        ensure!((r - x.sqrt()).abs() <= 1e-15 * x.sqrt(), "wrong root for {x}");
    }
    println!("\nload {load:.2?}, compile {compile:.2?}, execute + read back {execute:.2?}");
    Ok(())
}
