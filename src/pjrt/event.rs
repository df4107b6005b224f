//! `PJRT_Event`: completion of asynchronous work (transfers, executions) and its error.

use std::ptr::NonNull;

use super::api::{pjrt_call, Api, Args};
use super::sys;
use crate::error::Result;

/// An owned PJRT event. Awaiting it blocks until the work completes and returns the error the
/// work ended with, if any. Dropping it without awaiting is allowed.
pub struct Event {
    raw: NonNull<sys::PJRT_Event>,
    api: Api,
}

// SAFETY: PJRT events are thread-safe objects (their C++ counterparts are reference-counted
// async values); awaiting from another thread than the one that created them is supported.
unsafe impl Send for Event {}

impl Event {
    /// Wraps an event returned by the plugin; `None` for null.
    pub(crate) fn from_raw(api: Api, raw: *mut sys::PJRT_Event) -> Option<Event> {
        NonNull::new(raw).map(|raw| Event { raw, api })
    }

    /// Blocks until the event is ready and returns the error it carries.
    ///
    /// # Errors
    /// [`crate::Error::Pjrt`] with the error of the asynchronous work (or of the await itself).
    pub fn wait(self, doing: &str) -> Result<()> {
        let mut a = sys::PJRT_Event_Await_Args::new();
        a.event = self.raw.as_ptr();
        pjrt_call!(self.api, PJRT_Event_Await, &mut a, || format!("waiting for {doing}"))?;
        let mut e = sys::PJRT_Event_Error_Args::new();
        e.event = self.raw.as_ptr();
        pjrt_call!(self.api, PJRT_Event_Error, &mut e, || doing.to_string())
    }

    /// True when the work has completed (successfully or not).
    ///
    /// # Errors
    /// [`crate::Error::Pjrt`] when the query fails.
    pub fn is_ready(&self) -> Result<bool> {
        let mut a = sys::PJRT_Event_IsReady_Args::new();
        a.event = self.raw.as_ptr();
        pjrt_call!(self.api, PJRT_Event_IsReady, &mut a, || "querying an event".into())?;
        Ok(a.is_ready)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let mut a = sys::PJRT_Event_Destroy_Args::new();
        a.event = self.raw.as_ptr();
        let _ = pjrt_call!(self.api, PJRT_Event_Destroy, &mut a, || "destroying an event".into());
    }
}
