//! nlsq's default XLA options reach the process's XLA_FLAGS before the plugin loads, and a fit
//! compiled under them gives the same answer; NLSQ_PJRT_CLIENT_OPTIONS reach the default client. Its own test binary: it reads and sets process-wide
//! environment variables before the runtime exists.

#[test]
fn default_xla_options_are_added_once_before_the_plugin_loads() {
    std::env::remove_var("XLA_FLAGS");
    let opted_out = std::env::var("NLSQ_XLA_DEFAULTS").is_ok_and(|v| v.trim() == "0");
    let pinned_cpu = std::env::var_os("NLSQ_PJRT_PLUGIN").map_or(true, |v| v.is_empty());
    // NLSQ_PJRT_CLIENT_OPTIONS that do not parse: a typed error, and no client is kept...
    std::env::set_var("NLSQ_PJRT_CLIENT_OPTIONS", "preallocate");
    let e = nlsq::runtime::client().unwrap_err();
    assert!(
        matches!(
            e,
            nlsq::Error::InvalidOption {
                field: "NLSQ_PJRT_CLIENT_OPTIONS",
                ..
            }
        ),
        "{e}"
    );
    // ... so the next call, with options that parse, creates it with them (replacing nlsq's
    // default `cpu_device_count` of one device per core).
    if pinned_cpu {
        std::env::set_var("NLSQ_PJRT_CLIENT_OPTIONS", "cpu_device_count=3");
    } else {
        std::env::remove_var("NLSQ_PJRT_CLIENT_OPTIONS");
    }
    let c = nlsq::runtime::client().expect("the PJRT runtime (the build provisions the plugin)");
    std::env::remove_var("NLSQ_PJRT_CLIENT_OPTIONS");
    if pinned_cpu {
        assert_eq!(c.devices().len(), 3);
    }
    let flags = std::env::var("XLA_FLAGS").unwrap_or_default();
    if opted_out {
        assert!(
            flags.is_empty(),
            "NLSQ_XLA_DEFAULTS=0 must leave XLA_FLAGS alone: {flags}"
        );
        return;
    }
    let loops = format!(
        "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={}",
        nlsq::runtime::SMALL_WHILE_LOOP_BYTES
    );
    // The emitter flag only for the pinned CPU plugin (another plugin may not know it).
    let expected = if !pinned_cpu {
        loops
    } else {
        format!("{loops} {}", nlsq::runtime::CPU_FUSION_EMITTERS_FLAG)
    };
    assert_eq!(flags, expected);
    // A second request for the runtime does not add it again.
    nlsq::runtime::client().unwrap();
    assert_eq!(std::env::var("XLA_FLAGS").unwrap(), expected);

    // A fit compiled with the options (every solver loop one kernel) still converges to the
    // closed-form answer of an exactly exponential dataset.
    use nlsq::fit::{curve_fit, FitOptions};
    use nlsq::graph::{Params, Tensor};
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let x: Vec<f64> = (0..200).map(|i| i as f64 * 0.025).collect();
    let y: Vec<f64> = x.iter().map(|x| 2.5 * (-1.3 * x).exp() + 0.5).collect();
    let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &FitOptions::default()).unwrap();
    for (got, want) in fit.popt.iter().zip([2.5, 1.3, 0.5]) {
        assert!((got - want).abs() < 1e-9 * want, "popt {} vs {want}", got);
    }
}
