//! Exports `mi_malloc` from the `nlsq` executable, so that `nlsq::pjrt::process_malloc()` can
//! tell that the process's `malloc` is the mimalloc this binary links (it is otherwise not in
//! the dynamic symbol table).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=mi_malloc");
    }
}
