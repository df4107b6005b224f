//! `PJRT_Buffer`: device memory, host→device and device→host copies.

use std::fmt;
use std::ptr::NonNull;

use super::api::{destroy, pjrt_call, Args};
use super::client::{Client, Device};
use super::event::Event;
use super::sys;
use crate::error::{Error, Result};
use crate::types::{DType, NativeType, Shape};

/// Maps nlsq's element types to PJRT's.
pub(crate) fn to_pjrt_type(d: DType) -> sys::PJRT_Buffer_Type {
    match d {
        DType::F64 => sys::PJRT_Buffer_Type::PJRT_Buffer_Type_F64,
        DType::F32 => sys::PJRT_Buffer_Type::PJRT_Buffer_Type_F32,
        DType::I64 => sys::PJRT_Buffer_Type::PJRT_Buffer_Type_S64,
        DType::I32 => sys::PJRT_Buffer_Type::PJRT_Buffer_Type_S32,
        DType::Bool => sys::PJRT_Buffer_Type::PJRT_Buffer_Type_PRED,
    }
}

/// Maps PJRT's element types to nlsq's; `None` for types nlsq does not use.
pub(crate) fn from_pjrt_type(t: sys::PJRT_Buffer_Type) -> Option<DType> {
    Some(match t {
        sys::PJRT_Buffer_Type::PJRT_Buffer_Type_F64 => DType::F64,
        sys::PJRT_Buffer_Type::PJRT_Buffer_Type_F32 => DType::F32,
        sys::PJRT_Buffer_Type::PJRT_Buffer_Type_S64 => DType::I64,
        sys::PJRT_Buffer_Type::PJRT_Buffer_Type_S32 => DType::I32,
        sys::PJRT_Buffer_Type::PJRT_Buffer_Type_PRED => DType::Bool,
        _ => return None,
    })
}

/// Number of elements of `dims`, or an error for negative or overflowing dimensions.
pub(crate) fn element_count(what: &'static str, dims: &[i64]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| Error::InvalidArgument {
            what,
            reason: format!("negative dimension in {}", Shape::from(dims)),
        })?;
        acc.checked_mul(d).ok_or_else(|| Error::InvalidArgument {
            what,
            reason: format!("shape {} overflows", Shape::from(dims)),
        })
    })
}

/// Alignment of [`HostVec`] data: what XLA:CPU needs to use host memory in place.
const HOST_ALIGN: usize = 64;

/// A host array whose data start on a 64-byte boundary, so that
/// [`Client::buffer_from_host_vec`] can lend it to the CPU plugin without a copy.
pub struct HostVec<T> {
    buf: Vec<T>,
    offset: usize,
    len: usize,
}

impl<T: Copy> HostVec<T> {
    /// `len` copies of `fill`. Aborts the process, as `vec!` does, when the memory cannot be
    /// had: [`HostVec::try_filled`] is the fallible form.
    pub fn filled(len: usize, fill: T) -> HostVec<T> {
        Self::aligned(vec![fill; len + Self::slack()], len)
    }

    /// `len` copies of `fill`, or [`Error::InvalidArgument`] when the process cannot allocate
    /// them (its address space or memory is too small), before anything is written.
    ///
    /// # Errors
    /// As above.
    pub fn try_filled(len: usize, fill: T) -> Result<HostVec<T>> {
        let too_large = || Error::InvalidArgument {
            what: "host array",
            reason: format!("{len} values do not fit in this process's memory"),
        };
        let total = len.checked_add(Self::slack()).ok_or_else(too_large)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(total).map_err(|_| too_large())?;
        buf.resize(total, fill);
        Ok(Self::aligned(buf, len))
    }

    /// Elements of padding that let the data start on the boundary.
    fn slack() -> usize {
        HOST_ALIGN.div_ceil(std::mem::size_of::<T>().max(1))
    }

    /// `buf` (`len` + [`HostVec::slack`] elements) with its data placed on the boundary.
    fn aligned(buf: Vec<T>, len: usize) -> HostVec<T> {
        let size = std::mem::size_of::<T>().max(1);
        // A Vec's pointer is aligned to `T`, so the distance to the boundary is whole elements.
        let misalign = buf.as_ptr() as usize % HOST_ALIGN;
        let offset = ((HOST_ALIGN - misalign) % HOST_ALIGN) / size;
        HostVec { buf, offset, len }
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        &self.buf[self.offset..self.offset + self.len]
    }

    /// The elements, to fill in.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buf[self.offset..self.offset + self.len]
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy> From<&[T]> for HostVec<T> {
    fn from(data: &[T]) -> HostVec<T> {
        match data.first() {
            None => HostVec {
                buf: Vec::new(),
                offset: 0,
                len: 0,
            },
            Some(&first) => {
                let mut v = HostVec::filled(data.len(), first);
                v.as_mut_slice().copy_from_slice(data);
                v
            }
        }
    }
}

/// A buffer in device memory. Owns a reference to its client, so the client outlives it.
pub struct Buffer {
    raw: NonNull<sys::PJRT_Buffer>,
    client: Client,
    /// Host memory the buffer may alias ([`Client::buffer_from_host_vec`]): kept alive until PJRT
    /// says it is done with it, after the buffer is destroyed.
    host: Option<HostData>,
}

/// Host data lent to PJRT without a copy, and the event PJRT fires when it no longer reads it.
struct HostData {
    done: Option<Event>,
    _data: Box<dyn std::any::Any + Send + Sync>,
}

// SAFETY: PJRT buffers are thread-safe (PjRtBuffer methods may be called concurrently; the C API
// wraps them without thread affinity). The client reference keeps the function table alive.
unsafe impl Send for Buffer {}
// SAFETY: see `Send`; all methods take `&self` and only read.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        destroy!(
            self.client.api(),
            PJRT_Buffer_Destroy,
            PJRT_Buffer_Destroy_Args {
                buffer: self.raw.as_ptr()
            },
            "destroying a buffer"
        );
        // Only now may lent host memory go: PJRT may read it until the buffer is gone.
        if let Some(host) = self.host.take() {
            if let Some(done) = host.done {
                let _ = done.wait("releasing host memory lent to a buffer");
            }
        }
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = self.dtype().map(|d| d.to_string()).unwrap_or_else(|e| e.to_string());
        let dims = self
            .dims()
            .map(|d| Shape(d).to_string())
            .unwrap_or_else(|e| e.to_string());
        write!(f, "Buffer({dtype}{dims})")
    }
}

impl Client {
    /// Copies `data` (row-major, outermost dimension first) into a new buffer of shape `dims` on
    /// the default device. `dims = &[]` makes a scalar.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `data.len()` is not the product of `dims` (checked before
    /// anything reaches PJRT), [`Error::Pjrt`] when the transfer fails.
    pub fn buffer_from_host<T: NativeType>(&self, data: &[T], dims: &[i64]) -> Result<Buffer> {
        let device = self.default_device()?;
        self.buffer_from_host_on(&device, data, dims)
    }

    /// Like [`Client::buffer_from_host`], but hands `data` itself to the device: on a plugin
    /// whose device memory is host memory (CPU), the buffer uses the (aligned) [`HostVec`] in
    /// place (`kImmutableZeroCopy`) instead of keeping a second copy, which halves the memory of
    /// large inputs. The buffer owns `data` and frees it once PJRT is done with it; a plugin that
    /// cannot alias copies, as `buffer_from_host` does.
    ///
    /// # Errors
    /// As [`Client::buffer_from_host`].
    pub fn buffer_from_host_vec<T: NativeType + Send + Sync + 'static>(
        &self,
        data: HostVec<T>,
        dims: &[i64],
    ) -> Result<Buffer> {
        let device = self.default_device()?;
        self.buffer_from_host_vec_on(&device, data, dims)
    }

    /// Like [`Client::buffer_from_host_vec`], on a chosen device of this client.
    ///
    /// # Errors
    /// As [`Client::buffer_from_host_on`].
    pub fn buffer_from_host_vec_on<T: NativeType + Send + Sync + 'static>(
        &self,
        device: &Device<'_>,
        data: HostVec<T>,
        dims: &[i64],
    ) -> Result<Buffer> {
        let semantics = sys::PJRT_HostBufferSemantics::PJRT_HostBufferSemantics_kImmutableZeroCopy;
        let (raw, done) = match self.transfer(device, data.as_slice(), dims, semantics, "buffer_from_host_vec") {
            Ok(lent) => lent,
            Err(e @ Error::InvalidArgument { .. }) => return Err(e),
            // A plugin that refuses to alias host memory: copy, as `buffer_from_host` does.
            Err(_) => return self.buffer_from_host_on(device, data.as_slice(), dims),
        };
        // The heap allocation behind `data` does not move when it is boxed, so the pointer PJRT
        // holds stays valid until `Buffer::drop` has destroyed the buffer and awaited `done`.
        Ok(Buffer {
            raw,
            client: self.clone(),
            host: Some(HostData {
                done,
                _data: Box::new(data),
            }),
        })
    }

    /// Like [`Client::buffer_from_host`], on a chosen device of this client.
    ///
    /// # Errors
    /// As [`Client::buffer_from_host`], plus [`Error::InvalidArgument`] for a device of another client.
    pub fn buffer_from_host_on<T: NativeType>(&self, device: &Device<'_>, data: &[T], dims: &[i64]) -> Result<Buffer> {
        let semantics = sys::PJRT_HostBufferSemantics::PJRT_HostBufferSemantics_kImmutableOnlyDuringCall;
        let (raw, done) = self.transfer(device, data, dims, semantics, "buffer_from_host")?;
        let buffer = Buffer {
            raw,
            client: self.clone(),
            host: None,
        };
        // The copy is complete when the call returns (kImmutableOnlyDuringCall), but the event
        // must still be destroyed; awaiting it also surfaces a failed transfer.
        if let Some(done) = done {
            done.wait("a host-to-device copy")?;
        }
        Ok(buffer)
    }

    /// `PJRT_Client_BufferFromHostBuffer` of `data` with `semantics`, after checking the shape
    /// and the device: the new buffer and PJRT's done-with-host-memory event.
    fn transfer<T: NativeType>(
        &self,
        device: &Device<'_>,
        data: &[T],
        dims: &[i64],
        semantics: sys::PJRT_HostBufferSemantics,
        what: &'static str,
    ) -> Result<(NonNull<sys::PJRT_Buffer>, Option<Event>)> {
        let n = element_count(what, dims)?;
        if n != data.len() {
            return Err(Error::InvalidArgument {
                what,
                reason: format!(
                    "shape {} holds {n} elements but {} were given",
                    Shape::from(dims),
                    data.len()
                ),
            });
        }
        if !self.owns_device(device) {
            return Err(Error::InvalidArgument {
                what,
                reason: format!("device {device:?} belongs to another client"),
            });
        }
        let mut a = sys::PJRT_Client_BufferFromHostBuffer_Args::new();
        a.client = self.raw();
        a.data = data.as_ptr().cast();
        a.type_ = to_pjrt_type(T::DTYPE);
        a.dims = dims.as_ptr();
        a.num_dims = dims.len();
        a.host_buffer_semantics = semantics;
        a.device = device.raw();
        pjrt_call!(self.api(), PJRT_Client_BufferFromHostBuffer, &mut a, || format!(
            "copying {} {} to the device",
            T::DTYPE,
            Shape::from(dims)
        ))?;
        let done = Event::from_raw(self.api(), a.done_with_host_buffer);
        match NonNull::new(a.buffer) {
            Some(raw) => Ok((raw, done)),
            None => {
                // No buffer: PJRT must be done with the host memory before the caller frees it.
                if let Some(done) = done {
                    let _ = done.wait("a failed host-to-device transfer");
                }
                Err(Error::InvalidArgument {
                    what,
                    reason: "PJRT returned no buffer".into(),
                })
            }
        }
    }
}

impl Buffer {
    pub(crate) fn from_raw(client: &Client, raw: *mut sys::PJRT_Buffer) -> Option<Buffer> {
        NonNull::new(raw).map(|raw| Buffer {
            raw,
            client: client.clone(),
            host: None,
        })
    }

    pub(crate) fn raw(&self) -> *mut sys::PJRT_Buffer {
        self.raw.as_ptr()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The element type.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an element type nlsq does not use (e.g. bf16).
    pub fn dtype(&self) -> Result<DType> {
        let mut a = sys::PJRT_Buffer_ElementType_Args::new();
        a.buffer = self.raw();
        pjrt_call!(self.client.api(), PJRT_Buffer_ElementType, &mut a, || {
            "reading a buffer's element type".into()
        })?;
        from_pjrt_type(a.type_).ok_or_else(|| Error::InvalidArgument {
            what: "Buffer::dtype",
            reason: format!("unsupported PJRT element type {}", a.type_.0),
        })
    }

    /// The dimensions, outermost first (empty for a scalar).
    ///
    /// # Errors
    /// [`Error::Pjrt`] when the query fails.
    pub fn dims(&self) -> Result<Vec<i64>> {
        let mut a = sys::PJRT_Buffer_Dimensions_Args::new();
        a.buffer = self.raw();
        pjrt_call!(self.client.api(), PJRT_Buffer_Dimensions, &mut a, || {
            "reading a buffer's dimensions".into()
        })?;
        if a.dims.is_null() || a.num_dims == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: the array is owned by the buffer, which is alive.
        Ok(unsafe { std::slice::from_raw_parts(a.dims, a.num_dims) }.to_vec())
    }

    /// Copies the buffer to a host vector (row-major).
    ///
    /// # Errors
    /// [`Error::BufferDType`] when `T` is not the buffer's element type; [`Error::Pjrt`] when the
    /// copy fails.
    pub fn to_vec<T: NativeType>(&self) -> Result<Vec<T>> {
        let dtype = self.dtype()?;
        if dtype != T::DTYPE {
            return Err(Error::BufferDType {
                actual: dtype,
                requested: T::DTYPE,
            });
        }
        let dims = self.dims()?;
        let n = element_count("Buffer::to_vec", &dims)?;
        if T::DTYPE == DType::Bool {
            // Read bytes, not `bool`s: a byte other than 0 or 1 in a `bool` would be undefined behaviour.
            let mut bytes = vec![0u8; n];
            self.copy_to_host(bytes.as_mut_ptr(), n)?;
            let v: Vec<bool> = bytes.into_iter().map(|b| b != 0).collect();
            let any: Box<dyn std::any::Any> = Box::new(v);
            return Ok(*any.downcast::<Vec<T>>().expect("T is bool when DTYPE is Bool"));
        }
        let mut out = vec![T::default(); n];
        let bytes = n * T::DTYPE.size_in_bytes();
        if !self.read_in_place(dims.len(), out.as_mut_ptr().cast(), bytes)? {
            self.copy_to_host(out.as_mut_ptr().cast(), bytes)?;
        }
        Ok(out)
    }

    /// Copies the buffer to an n-dimensional array of its shape.
    ///
    /// # Errors
    /// As [`Buffer::to_vec`].
    pub fn to_array<T: NativeType>(&self) -> Result<ndarray::ArrayD<T>> {
        let dims: Vec<usize> = self.dims()?.into_iter().map(|d| d as usize).collect();
        let v = self.to_vec::<T>()?;
        ndarray::ArrayD::from_shape_vec(dims, v).map_err(|e| Error::InvalidArgument {
            what: "Buffer::to_array",
            reason: e.to_string(),
        })
    }

    /// The fast path of a device-to-host copy for a buffer that already lives in host memory
    /// (the CPU plugin) in dense row-major layout: waits until the buffer is ready and copies
    /// `size` bytes from its memory on this thread. A `PJRT_Buffer_ToHostBuffer` instead hands
    /// the copy to a worker thread and back (its cost: docs/performance.md, "Figures behind the
    /// runtime's choices"). Returns false (nothing copied) where the fast path does not apply,
    /// and the caller falls back to the copy through PJRT.
    fn read_in_place(&self, rank: usize, dst: *mut u8, size: usize) -> Result<bool> {
        if size == 0 || (rank > 1 && !self.is_row_major(rank)) {
            return Ok(false);
        }
        let mut on_cpu = sys::PJRT_Buffer_IsOnCpu_Args::new();
        on_cpu.buffer = self.raw();
        if pjrt_call!(self.client.api(), PJRT_Buffer_IsOnCpu, &mut on_cpu, || {
            "asking whether a buffer is in host memory".into()
        })
        .is_err()
            || !on_cpu.is_on_cpu
        {
            return Ok(false);
        }
        let mut dev_size = sys::PJRT_Buffer_OnDeviceSizeInBytes_Args::new();
        dev_size.buffer = self.raw();
        pjrt_call!(
            self.client.api(),
            PJRT_Buffer_OnDeviceSizeInBytes,
            &mut dev_size,
            || { "reading a buffer's size".into() }
        )?;
        if dev_size.on_device_size_in_bytes != size {
            return Ok(false);
        }
        let mut ready = sys::PJRT_Buffer_ReadyEvent_Args::new();
        ready.buffer = self.raw();
        pjrt_call!(self.client.api(), PJRT_Buffer_ReadyEvent, &mut ready, || {
            "asking for a buffer's ready event".into()
        })?;
        if let Some(ev) = Event::from_raw(self.client.api(), ready.event) {
            ev.wait("a buffer becoming ready")?;
        }
        let mut ptr = sys::PJRT_Buffer_UnsafePointer_Args::new();
        ptr.buffer = self.raw();
        if pjrt_call!(self.client.api(), PJRT_Buffer_UnsafePointer, &mut ptr, || {
            "reading a buffer's address".into()
        })
        .is_err()
            || ptr.buffer_pointer == 0
        {
            return Ok(false);
        }
        // SAFETY: the buffer is ready, lives in host memory, holds exactly `size` dense row-major
        // bytes (layout and size checked above) and stays alive (borrowed) during the copy; `dst` has
        // room for `size` bytes (caller's contract) and cannot overlap device-owned memory.
        unsafe { std::ptr::copy_nonoverlapping(ptr.buffer_pointer as *const u8, dst, size) };
        Ok(true)
    }

    /// Whether the buffer's memory layout is untiled with the last dimension minor-most (what
    /// [`Buffer::to_vec`] returns). False when the plugin cannot say.
    fn is_row_major(&self, rank: usize) -> bool {
        let mut a = sys::PJRT_Buffer_GetMemoryLayout_Args::new();
        a.buffer = self.raw();
        if pjrt_call!(self.client.api(), PJRT_Buffer_GetMemoryLayout, &mut a, || {
            "reading a buffer's layout".into()
        })
        .is_err()
            || a.layout.type_ != sys::PJRT_Buffer_MemoryLayout_Type::PJRT_Buffer_MemoryLayout_Type_Tiled
        {
            return false;
        }
        // SAFETY: the type says the union holds `tiled`; its arrays are owned by the args struct's
        // layout, which the plugin keeps valid while the buffer is alive.
        let tiled = unsafe { a.layout.__bindgen_anon_1.tiled };
        if tiled.num_tiles != 0 || tiled.minor_to_major_size != rank || tiled.minor_to_major.is_null() {
            return false;
        }
        // SAFETY: as above; `minor_to_major_size` elements.
        let m2m = unsafe { std::slice::from_raw_parts(tiled.minor_to_major, rank) };
        m2m.iter().enumerate().all(|(i, &d)| d == (rank - 1 - i) as i64)
    }

    /// Copies exactly `size` bytes of dense row-major data into `dst`.
    fn copy_to_host(&self, dst: *mut u8, size: usize) -> Result<()> {
        if size == 0 {
            return Ok(());
        }
        let mut a = sys::PJRT_Buffer_ToHostBuffer_Args::new();
        a.src = self.raw();
        a.dst = dst.cast();
        a.dst_size = size;
        pjrt_call!(self.client.api(), PJRT_Buffer_ToHostBuffer, &mut a, || {
            "copying a buffer to the host".into()
        })?;
        if let Some(ev) = Event::from_raw(self.client.api(), a.event) {
            ev.wait("a device-to-host copy")?;
        }
        Ok(())
    }
}
