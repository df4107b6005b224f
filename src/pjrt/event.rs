//! `PJRT_Event`: completion of asynchronous work (transfers, executions) and its error.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};

use super::api::{destroy_on_drop, pjrt_call, Api, Args};
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
    /// The calling thread sleeps on a Rust condition variable that a `PJRT_Event_OnReady`
    /// callback signals, and only then calls `PJRT_Event_Await` (which returns at once). Blocking
    /// inside `PJRT_Event_Await` would park the thread on one of the plugin's absl mutexes, and
    /// absl's first blocking wait in a process calibrates its cycle clock by sleeping (where
    /// `/sys/devices/system/cpu/cpu0/tsc_freq_khz` does not exist): that was most of the first
    /// execution of a fit loaded from the disk cache (docs/performance.md, "Figures behind the
    /// runtime's choices").
    ///
    /// # Errors
    /// [`crate::Error::Pjrt`] with the error of the asynchronous work (or of the await itself).
    pub fn wait(self, doing: &str) -> Result<()> {
        if !self.is_ready()? {
            self.sleep_until_ready(doing)?;
        }
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

    /// Sleeps until the plugin calls [`on_ready`] for this event.
    fn sleep_until_ready(&self, doing: &str) -> Result<()> {
        let signal = Arc::new(Signal::default());
        let user_arg = Box::into_raw(Box::new(Ready {
            api: self.api,
            signal: Arc::clone(&signal),
        }));
        let mut a = sys::PJRT_Event_OnReady_Args::new();
        a.event = self.raw.as_ptr();
        a.callback = Some(on_ready);
        a.user_arg = user_arg.cast();
        if let Err(e) = pjrt_call!(self.api, PJRT_Event_OnReady, &mut a, || format!("waiting for {doing}")) {
            // SAFETY: the callback was not registered, so `user_arg` is still ours alone.
            drop(unsafe { Box::from_raw(user_arg) });
            return Err(e);
        }
        let mut done = signal.done.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = signal.ready.wait(done).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }
}

/// Set once by [`on_ready`].
#[derive(Default)]
struct Signal {
    done: Mutex<bool>,
    ready: Condvar,
}

/// What [`on_ready`] receives: the table to destroy the error with, and whom to wake.
struct Ready {
    api: Api,
    signal: Arc<Signal>,
}

/// `PJRT_Event_OnReadyCallback`: owns `error` (the waiter reads it again through
/// `PJRT_Event_Error`) and `user_arg` (a `Box<Ready>` leaked by `sleep_until_ready`).
extern "C" fn on_ready(error: *mut sys::PJRT_Error, user_arg: *mut c_void) {
    // SAFETY: `user_arg` is the `Box<Ready>` leaked by `sleep_until_ready`, and the plugin
    // calls this callback exactly once per registration.
    let ready = unsafe { Box::from_raw(user_arg.cast::<Ready>()) };
    if !error.is_null() {
        ready.api.destroy_error(error);
    }
    let mut done = ready.signal.done.lock().unwrap_or_else(|p| p.into_inner());
    *done = true;
    ready.signal.ready.notify_all();
}

destroy_on_drop! {
    Event,
    |e| e.api,
    PJRT_Event_Destroy,
    PJRT_Event_Destroy_Args { event: e.raw.as_ptr() },
    "destroying an event"
}
