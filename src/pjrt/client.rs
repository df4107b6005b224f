//! `PJRT_Client` and `PJRT_Device`.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::api::{destroy_on_drop, implemented, pjrt_call, Api, Args};
use super::plugin::{string_from, NamedValue, NamedValues, Plugin};
use super::sys;
use crate::error::{Error, Result};

/// Owner of the raw client; freed when the last [`Client`], buffer or executable goes.
pub(crate) struct ClientInner {
    pub(crate) api: Api,
    pub(crate) raw: NonNull<sys::PJRT_Client>,
    plugin: &'static Plugin,
    platform_name: String,
    platform_version: String,
    devices: Vec<DeviceInfo>,
    /// Per device, the leases ([`Client::lease_device`]) now held.
    busy: Vec<AtomicUsize>,
}

#[derive(Clone, Debug)]
struct DeviceInfo {
    raw: NonNull<sys::PJRT_Device>,
    id: i32,
    kind: String,
    description: String,
}

// SAFETY: `PjRtClient` is thread-safe (pjrt_c_api.h documents the client functions as callable
// concurrently; XLA's PjRtClient implementations lock internally). Device pointers are owned
// by the client and immutable after creation.
unsafe impl Send for ClientInner {}
// SAFETY: see `Send`.
unsafe impl Sync for ClientInner {}

destroy_on_drop! {
    ClientInner,
    |c| c.api,
    PJRT_Client_Destroy,
    PJRT_Client_Destroy_Args { client: c.raw.as_ptr() },
    "destroying the client"
}

/// A PJRT client: the entry point for compiling programs and moving data to a device.
/// Cheap to clone (an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("platform", &self.inner.platform_name)
            .field("version", &self.inner.platform_version)
            .field("devices", &self.inner.devices.len())
            .finish()
    }
}

impl Client {
    /// An identity of this client, equal for its clones and distinct from every other live
    /// client (executables and buffers keep their client alive, so it is not reused while any
    /// of them exists).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    pub(crate) fn create(plugin: &'static Plugin, options: &[(&str, NamedValue)]) -> Result<Client> {
        let api = plugin.api;
        let values = NamedValues::new(options);
        let mut a = sys::PJRT_Client_Create_Args::new();
        a.create_options = values.raw.as_ptr();
        a.num_options = values.raw.len();
        pjrt_call!(api, PJRT_Client_Create, &mut a, || format!(
            "creating a client of {}",
            plugin.path().display()
        ))?;
        let raw = NonNull::new(a.client).ok_or_else(|| Error::PluginLoad {
            path: plugin.path().to_path_buf(),
            reason: "PJRT_Client_Create returned no client".into(),
        })?;
        // From here on the client is owned, so an error below frees it.
        let mut inner = ClientInner {
            api,
            raw,
            plugin,
            platform_name: String::new(),
            platform_version: String::new(),
            devices: Vec::new(),
            busy: Vec::new(),
        };
        // One of the client's strings, read with `$function` into `$args`'s `$ptr`/`$len`.
        macro_rules! client_string {
            ($function:ident, $args:ident, $ptr:ident, $len:ident, $doing:literal) => {{
                let mut a = sys::$args::new();
                a.client = raw.as_ptr();
                pjrt_call!(api, $function, &mut a, || $doing.into())?;
                // SAFETY: the string is owned by the client, which is alive.
                unsafe { string_from(a.$ptr, a.$len) }
            }};
        }
        inner.platform_name = client_string!(
            PJRT_Client_PlatformName,
            PJRT_Client_PlatformName_Args,
            platform_name,
            platform_name_size,
            "reading the platform name"
        );
        inner.platform_version = client_string!(
            PJRT_Client_PlatformVersion,
            PJRT_Client_PlatformVersion_Args,
            platform_version,
            platform_version_size,
            "reading the platform version"
        );
        let mut d = sys::PJRT_Client_AddressableDevices_Args::new();
        d.client = raw.as_ptr();
        pjrt_call!(api, PJRT_Client_AddressableDevices, &mut d, || {
            "listing addressable devices".into()
        })?;
        let ptrs: &[*mut sys::PJRT_Device] = if d.addressable_devices.is_null() {
            &[]
        } else {
            // SAFETY: the client owns this array for its lifetime.
            unsafe { std::slice::from_raw_parts(d.addressable_devices, d.num_addressable_devices) }
        };
        for &p in ptrs {
            let Some(raw) = NonNull::new(p) else { continue };
            inner.devices.push(describe(api, raw)?);
        }
        inner.busy = inner.devices.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Client { inner: Arc::new(inner) })
    }

    /// Platform name, e.g. `cpu` or `cuda`.
    pub fn platform_name(&self) -> &str {
        &self.inner.platform_name
    }

    /// Platform version string reported by the plugin.
    pub fn platform_version(&self) -> &str {
        &self.inner.platform_version
    }

    /// The plugin this client belongs to.
    pub fn plugin(&self) -> &'static Plugin {
        self.inner.plugin
    }

    /// The devices this process can address.
    pub fn devices(&self) -> Vec<Device<'_>> {
        self.inner
            .devices
            .iter()
            .map(|info| Device {
                info: info.clone(),
                api: self.inner.api,
                _client: PhantomData,
            })
            .collect()
    }

    /// The first addressable device, on which [`crate::pjrt::LoadedExecutable::execute`] runs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the client has no addressable device.
    pub fn default_device(&self) -> Result<Device<'_>> {
        self.devices().into_iter().next().ok_or_else(|| Error::InvalidArgument {
            what: "default_device",
            reason: format!("client of platform {} has no addressable device", self.platform_name()),
        })
    }

    /// The device with the fewest leases held now (the first of those on a tie), leased until
    /// the returned guard is dropped. Independent fits that each lease a device run side by
    /// side, one per device, where executions all sent to the default device would share it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the client has no addressable device.
    pub fn lease_device(&self) -> Result<DeviceLease<'_>> {
        loop {
            let (index, held) = self
                .inner
                .busy
                .iter()
                .map(|b| b.load(Ordering::Acquire))
                .enumerate()
                .min_by_key(|&(i, held)| (held, i))
                .ok_or_else(|| Error::InvalidArgument {
                    what: "lease_device",
                    reason: format!("client of platform {} has no addressable device", self.platform_name()),
                })?;
            let busy = &self.inner.busy[index];
            // Another thread may have taken the same device since the loads: then look again.
            if busy
                .compare_exchange(held, held + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(DeviceLease {
                    device: Device {
                        info: self.inner.devices[index].clone(),
                        api: self.inner.api,
                        _client: PhantomData,
                    },
                    busy,
                });
            }
        }
    }

    pub(crate) fn api(&self) -> Api {
        self.inner.api
    }

    pub(crate) fn raw(&self) -> *mut sys::PJRT_Client {
        self.inner.raw.as_ptr()
    }

    pub(crate) fn owns_device(&self, device: &Device<'_>) -> bool {
        self.inner.devices.iter().any(|d| d.raw == device.info.raw)
    }
}

/// A device leased by [`Client::lease_device`]: derefs to the [`Device`]; the lease ends
/// when this is dropped.
pub struct DeviceLease<'a> {
    device: Device<'a>,
    busy: &'a AtomicUsize,
}

impl<'a> std::ops::Deref for DeviceLease<'a> {
    type Target = Device<'a>;

    fn deref(&self) -> &Device<'a> {
        &self.device
    }
}

impl Drop for DeviceLease<'_> {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn describe(api: Api, raw: NonNull<sys::PJRT_Device>) -> Result<DeviceInfo> {
    let mut g = sys::PJRT_Device_GetDescription_Args::new();
    g.device = raw.as_ptr();
    pjrt_call!(api, PJRT_Device_GetDescription, &mut g, || {
        "reading a device description".into()
    })?;
    let mut id = sys::PJRT_DeviceDescription_Id_Args::new();
    id.device_description = g.device_description;
    pjrt_call!(api, PJRT_DeviceDescription_Id, &mut id, || "reading a device id".into())?;
    let mut k = sys::PJRT_DeviceDescription_Kind_Args::new();
    k.device_description = g.device_description;
    pjrt_call!(api, PJRT_DeviceDescription_Kind, &mut k, || "reading a device kind"
        .into())?;
    let mut s = sys::PJRT_DeviceDescription_DebugString_Args::new();
    s.device_description = g.device_description;
    pjrt_call!(api, PJRT_DeviceDescription_DebugString, &mut s, || {
        "reading a device description".into()
    })?;
    Ok(DeviceInfo {
        raw,
        id: id.id,
        // SAFETY: strings owned by the device description, which lives as long as the client.
        kind: unsafe { string_from(k.device_kind, k.device_kind_size) },
        // SAFETY: as above.
        description: unsafe { string_from(s.debug_string, s.debug_string_size) },
    })
}

/// A device of a client. Borrows the client, so it cannot outlive it.
#[derive(Clone)]
pub struct Device<'c> {
    info: DeviceInfo,
    api: Api,
    _client: PhantomData<&'c Client>,
}

/// How much memory a device has and uses, as its plugin reports it (`PJRT_Device_MemoryStats`;
/// the plugin's allocator statistics, meant for diagnostics). Only `bytes_in_use` is always
/// reported; the others are `None` where the plugin does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeviceMemoryStats {
    /// Memory allocated now.
    pub bytes_in_use: u64,
    /// The most allocated at once so far.
    pub peak_bytes_in_use: Option<u64>,
    /// The most that can be allocated on the device for this client in all (its allocator's
    /// limit).
    pub bytes_limit: Option<u64>,
    /// The largest single block that could be allocated now.
    pub largest_free_block_bytes: Option<u64>,
}

impl Device<'_> {
    /// The device id (unique within the client).
    pub fn id(&self) -> i32 {
        self.info.id
    }

    /// The device kind, e.g. `cpu` or `NVIDIA H100 80GB HBM3`.
    pub fn kind(&self) -> &str {
        &self.info.kind
    }

    /// The plugin's debug description of the device.
    pub fn description(&self) -> &str {
        &self.info.description
    }

    /// The device's memory as its plugin reports it; `None` where the plugin does not say
    /// (it lacks `PJRT_Device_MemoryStats` or answers that it is unimplemented, as the CPU
    /// plugin does: there the device's memory is the host's).
    ///
    /// # Errors
    /// [`Error::Pjrt`] when the plugin fails otherwise.
    pub fn memory_stats(&self) -> Result<Option<DeviceMemoryStats>> {
        let mut a = sys::PJRT_Device_MemoryStats_Args::new();
        a.device = self.raw();
        let read = pjrt_call!(self.api, PJRT_Device_MemoryStats, &mut a, || {
            "reading a device's memory statistics".into()
        });
        if !implemented(read)? {
            return Ok(None);
        }
        let bytes = |v: i64| u64::try_from(v).unwrap_or(0);
        let opt = |v: i64, set: bool| set.then(|| bytes(v));
        Ok(Some(DeviceMemoryStats {
            bytes_in_use: bytes(a.bytes_in_use),
            peak_bytes_in_use: opt(a.peak_bytes_in_use, a.peak_bytes_in_use_is_set),
            bytes_limit: opt(a.bytes_limit, a.bytes_limit_is_set),
            largest_free_block_bytes: opt(a.largest_free_block_bytes, a.largest_free_block_bytes_is_set),
        }))
    }

    pub(crate) fn raw(&self) -> *mut sys::PJRT_Device {
        self.info.raw.as_ptr()
    }
}

impl fmt::Debug for Device<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.info.id)
            .field("kind", &self.info.kind)
            .finish()
    }
}

impl fmt::Display for Device<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (id {})", self.info.description, self.info.id)
    }
}
