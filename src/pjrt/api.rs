//! The PJRT function table, the argument-struct constructor and the error converter.
//!
//! Every C API call goes through [`pjrt_call!`]: it looks the function up in the table
//! (a missing entry is [`Error::MissingFunction`], never a null call), calls it, and turns a
//! returned `PJRT_Error*` into [`Error::Pjrt`] with the function name, the code, the plugin's
//! message and what nlsq was doing, destroying the C error in every case.

use super::sys;
use crate::error::{Error, PjrtCode};

/// The PJRT function table of a loaded plugin. The plugin is never unloaded, so the table is
/// `'static`.
#[derive(Clone, Copy)]
pub(crate) struct Api {
    raw: &'static sys::PJRT_Api,
}

// SAFETY: the function table is immutable after `GetPjrtApi` returns; PJRT documents the API
// functions as callable from any thread (the handles they act on carry their own rules).
unsafe impl Send for Api {}
// SAFETY: see `Send`: the table is read-only.
unsafe impl Sync for Api {}

impl Api {
    /// Wraps a table returned by `GetPjrtApi`.
    ///
    /// # Safety
    /// `raw` must point to a valid `PJRT_Api` that lives for the rest of the process.
    pub(crate) unsafe fn from_raw(raw: *const sys::PJRT_Api) -> Option<Api> {
        // SAFETY: the caller guarantees validity and lifetime when non-null.
        unsafe { raw.as_ref() }.map(|raw| Api { raw })
    }

    /// The raw table.
    pub(crate) fn raw(&self) -> &'static sys::PJRT_Api {
        self.raw
    }

    /// `(major, minor)` of the C API the plugin implements.
    pub(crate) fn version(&self) -> (i32, i32) {
        (
            self.raw.pjrt_api_version.major_version,
            self.raw.pjrt_api_version.minor_version,
        )
    }

    /// Converts a returned `PJRT_Error*` (null = success) into a `Result`, destroying it.
    pub(crate) fn check(
        &self,
        err: *mut sys::PJRT_Error,
        function: &'static str,
        doing: impl FnOnce() -> String,
    ) -> crate::Result<()> {
        if err.is_null() {
            return Ok(());
        }
        Err(self.take_error(err, function, doing()))
    }

    /// Reads code and message of a non-null error and destroys it.
    pub(crate) fn take_error(&self, err: *mut sys::PJRT_Error, function: &'static str, doing: String) -> Error {
        let mut message = String::from("(no message)");
        if let Some(f) = self.raw.PJRT_Error_Message {
            let mut a = sys::PJRT_Error_Message_Args::new();
            a.error = err;
            // SAFETY: `err` is a live error returned by this plugin; `a` is a properly sized args struct.
            unsafe { f(&mut a) };
            if !a.message.is_null() {
                // SAFETY: the plugin returns a pointer/length pair valid until the error is destroyed.
                let bytes = unsafe { std::slice::from_raw_parts(a.message.cast::<u8>(), a.message_size) };
                message = String::from_utf8_lossy(bytes).into_owned();
            }
        }
        let mut code = PjrtCode::Unknown;
        if let Some(f) = self.raw.PJRT_Error_GetCode {
            let mut a = sys::PJRT_Error_GetCode_Args::new();
            a.error = err;
            // SAFETY: as above.
            let e2 = unsafe { f(&mut a) };
            if e2.is_null() {
                code = PjrtCode::from_raw(a.code.0 as i32);
            } else {
                self.destroy_error(e2);
            }
        }
        self.destroy_error(err);
        Error::Pjrt {
            function,
            code,
            message,
            doing,
        }
    }

    /// Destroys an error the plugin handed over (null is not allowed).
    pub(crate) fn destroy_error(&self, err: *mut sys::PJRT_Error) {
        if let Some(f) = self.raw.PJRT_Error_Destroy {
            let mut a = sys::PJRT_Error_Destroy_Args::new();
            a.error = err;
            // SAFETY: `err` is a live error of this plugin and is destroyed exactly once here.
            unsafe { f(&mut a) };
        }
    }
}

/// Calls one entry of the function table: `pjrt_call!(api, PJRT_Client_Compile, &mut args, || "what")`.
macro_rules! pjrt_call {
    ($api:expr, $name:ident, $args:expr, $doing:expr) => {{
        let api: $crate::pjrt::api::Api = $api;
        match api.raw().$name {
            None => Err($crate::error::Error::MissingFunction {
                function: stringify!($name),
            }),
            Some(f) => {
                // SAFETY: `f` comes from the plugin's function table and `$args` is an args
                // struct built with `Args::new()` (zeroed, `struct_size` set) whose pointers the
                // caller keeps alive for the duration of the call.
                let err = unsafe { f($args) };
                api.check(err, stringify!($name), $doing)
            }
        }
    }};
}
pub(crate) use pjrt_call;

/// The outcome of a call to an optional part of the C API: `Ok(true)` when it succeeded,
/// `Ok(false)` when the plugin lacks the function (an older plugin) or answers that it is
/// unimplemented, the error otherwise.
pub(crate) fn implemented(result: crate::Result<()>) -> crate::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(Error::MissingFunction { .. })
        | Err(Error::Pjrt {
            code: PjrtCode::Unimplemented,
            ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Frees a PJRT object with its `_Destroy` function in a `Drop`, where there is no caller to
/// give an error to (it is dropped): `destroy!(api, PJRT_Buffer_Destroy,
/// PJRT_Buffer_Destroy_Args { buffer: ptr }, "destroying a buffer")`.
macro_rules! destroy {
    ($api:expr, $name:ident, $args:ident { $field:ident: $ptr:expr }, $doing:literal) => {{
        let mut a = <$crate::pjrt::sys::$args as $crate::pjrt::api::Args>::new();
        a.$field = $ptr;
        let _ = $crate::pjrt::api::pjrt_call!($api, $name, &mut a, || $doing.into());
    }};
}
pub(crate) use destroy;

/// `impl Drop` for a wrapper whose drop only frees its PJRT object ([`destroy!`]); `$this` names
/// the wrapper in the api and pointer expressions:
/// `destroy_on_drop! { Event, |e| e.api, PJRT_Event_Destroy, PJRT_Event_Destroy_Args { event:
/// e.raw.as_ptr() }, "destroying an event" }`.
macro_rules! destroy_on_drop {
    ($ty:ty, |$this:ident| $api:expr, $name:ident, $args:ident { $field:ident: $ptr:expr }, $doing:literal) => {
        impl Drop for $ty {
            fn drop(&mut self) {
                let $this = &*self;
                $crate::pjrt::api::destroy!($api, $name, $args { $field: $ptr }, $doing);
            }
        }
    };
}
pub(crate) use destroy_on_drop;

/// Constructor for PJRT argument structs: zero-filled with `struct_size` set, which the
/// plugin checks (a zero `struct_size`, as `Default` would give, is rejected).
pub(crate) trait Args: Sized {
    /// A zeroed struct with `struct_size` set.
    fn new() -> Self;
}

macro_rules! impl_args {
    ($($ty:ident => $size:ident),* $(,)?) => {$(
        impl Args for sys::$ty {
            fn new() -> Self {
                // SAFETY: these are plain C structs of integers, raw pointers, `Option` of
                // function pointers and unions thereof, for which all-zero bytes are valid
                // (null, `None`, 0).
                let mut a: Self = unsafe { std::mem::zeroed() };
                a.struct_size = sys::$size.0 as usize;
                a
            }
        }
    )*};
}

impl_args! {
    PJRT_Error_Destroy_Args => PJRT_Error_Destroy_Args_STRUCT_SIZE,
    PJRT_Error_Message_Args => PJRT_Error_Message_Args_STRUCT_SIZE,
    PJRT_Error_GetCode_Args => PJRT_Error_GetCode_Args_STRUCT_SIZE,
    PJRT_Plugin_Initialize_Args => PJRT_Plugin_Initialize_Args_STRUCT_SIZE,
    PJRT_Plugin_Attributes_Args => PJRT_Plugin_Attributes_Args_STRUCT_SIZE,
    PJRT_NamedValue => PJRT_NamedValue_STRUCT_SIZE,
    PJRT_Event_Destroy_Args => PJRT_Event_Destroy_Args_STRUCT_SIZE,
    PJRT_Event_Await_Args => PJRT_Event_Await_Args_STRUCT_SIZE,
    PJRT_Event_Error_Args => PJRT_Event_Error_Args_STRUCT_SIZE,
    PJRT_Event_IsReady_Args => PJRT_Event_IsReady_Args_STRUCT_SIZE,
    PJRT_Event_OnReady_Args => PJRT_Event_OnReady_Args_STRUCT_SIZE,
    PJRT_Client_Create_Args => PJRT_Client_Create_Args_STRUCT_SIZE,
    PJRT_Client_Destroy_Args => PJRT_Client_Destroy_Args_STRUCT_SIZE,
    PJRT_Client_PlatformName_Args => PJRT_Client_PlatformName_Args_STRUCT_SIZE,
    PJRT_Client_PlatformVersion_Args => PJRT_Client_PlatformVersion_Args_STRUCT_SIZE,
    PJRT_Client_AddressableDevices_Args => PJRT_Client_AddressableDevices_Args_STRUCT_SIZE,
    PJRT_Client_Compile_Args => PJRT_Client_Compile_Args_STRUCT_SIZE,
    PJRT_Client_BufferFromHostBuffer_Args => PJRT_Client_BufferFromHostBuffer_Args_STRUCT_SIZE,
    PJRT_Program => PJRT_Program_STRUCT_SIZE,
    PJRT_Device_GetDescription_Args => PJRT_Device_GetDescription_Args_STRUCT_SIZE,
    PJRT_DeviceDescription_Id_Args => PJRT_DeviceDescription_Id_Args_STRUCT_SIZE,
    PJRT_DeviceDescription_Kind_Args => PJRT_DeviceDescription_Kind_Args_STRUCT_SIZE,
    PJRT_DeviceDescription_DebugString_Args => PJRT_DeviceDescription_DebugString_Args_STRUCT_SIZE,
    PJRT_Buffer_Destroy_Args => PJRT_Buffer_Destroy_Args_STRUCT_SIZE,
    PJRT_Buffer_ElementType_Args => PJRT_Buffer_ElementType_Args_STRUCT_SIZE,
    PJRT_Buffer_Dimensions_Args => PJRT_Buffer_Dimensions_Args_STRUCT_SIZE,
    PJRT_Buffer_ToHostBuffer_Args => PJRT_Buffer_ToHostBuffer_Args_STRUCT_SIZE,
    PJRT_Buffer_GetMemoryLayout_Args => PJRT_Buffer_GetMemoryLayout_Args_STRUCT_SIZE,
    PJRT_Buffer_IsOnCpu_Args => PJRT_Buffer_IsOnCpu_Args_STRUCT_SIZE,
    PJRT_Buffer_OnDeviceSizeInBytes_Args => PJRT_Buffer_OnDeviceSizeInBytes_Args_STRUCT_SIZE,
    PJRT_Buffer_ReadyEvent_Args => PJRT_Buffer_ReadyEvent_Args_STRUCT_SIZE,
    PJRT_Buffer_UnsafePointer_Args => PJRT_Buffer_UnsafePointer_Args_STRUCT_SIZE,
    PJRT_LoadedExecutable_Destroy_Args => PJRT_LoadedExecutable_Destroy_Args_STRUCT_SIZE,
    PJRT_LoadedExecutable_GetExecutable_Args => PJRT_LoadedExecutable_GetExecutable_Args_STRUCT_SIZE,
    PJRT_LoadedExecutable_Execute_Args => PJRT_LoadedExecutable_Execute_Args_STRUCT_SIZE,
    PJRT_ExecuteOptions => PJRT_ExecuteOptions_STRUCT_SIZE,
    PJRT_Executable_Destroy_Args => PJRT_Executable_Destroy_Args_STRUCT_SIZE,
    PJRT_Executable_NumOutputs_Args => PJRT_Executable_NumOutputs_Args_STRUCT_SIZE,
    PJRT_Executable_Serialize_Args => PJRT_Executable_Serialize_Args_STRUCT_SIZE,
    PJRT_Executable_DeserializeAndLoad_Args => PJRT_Executable_DeserializeAndLoad_Args_STRUCT_SIZE,
    PJRT_Executable_Fingerprint_Args => PJRT_Executable_Fingerprint_Args_STRUCT_SIZE,
    PJRT_Executable_GetCompiledMemoryStats_Args => PJRT_Executable_GetCompiledMemoryStats_Args_STRUCT_SIZE,
    PJRT_Device_MemoryStats_Args => PJRT_Device_MemoryStats_Args_STRUCT_SIZE,
}
