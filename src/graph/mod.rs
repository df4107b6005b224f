//! Graph builder: tracing models written as Rust code, StableHLO emission, forward-mode autodiff.
