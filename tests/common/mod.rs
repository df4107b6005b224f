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
