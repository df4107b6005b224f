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
