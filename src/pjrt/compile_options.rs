//! A small encoder for the `xla.CompileOptionsProto` fields nlsq sets.
//!
//! The CPU plugin aborts the process on an empty `CompileOptionsProto`, and the proto's zero
//! defaults are not the intended defaults (`num_replicas = 0` is invalid). We therefore always
//! send `executable_build_options { device_ordinal: -1, num_replicas: 1, num_partitions: 1 }`,
//! encoded by hand in protobuf wire format (field numbers from `xla/pjrt/proto/compile_options.proto`
//! and `xla/xla.proto`: `CompileOptionsProto.executable_build_options = 3`,
//! `ExecutableBuildOptionsProto.device_ordinal = 1, num_replicas = 4, num_partitions = 5`), plus
//! `CompileOptionsProto.compile_portable_executable = 4` when asked for.
//!
//! # References
//! - Protocol Buffers encoding: <https://protobuf.dev/programming-guides/encoding/>

/// The compile options nlsq controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Device to build for; `-1` lets the client choose (the default).
    pub device_ordinal: i64,
    /// Number of replicas (must be >= 1).
    pub num_replicas: i64,
    /// Number of partitions (must be >= 1).
    pub num_partitions: i64,
    /// A portable executable runs on any device of the client (chosen per execution with
    /// [`crate::pjrt::LoadedExecutable::execute_on`]); an ordinary one only on the device it was
    /// built for. Single-device programs only.
    pub portable: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            device_ordinal: -1,
            num_replicas: 1,
            num_partitions: 1,
            portable: false,
        }
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn int_field(out: &mut Vec<u8>, field: u32, v: i64) {
    varint(out, u64::from(field) << 3); // wire type 0 (varint)
    varint(out, v as u64); // int64: two's complement, 10 bytes when negative
}

impl CompileOptions {
    /// Serialized `CompileOptionsProto` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut build = Vec::new();
        int_field(&mut build, 1, self.device_ordinal);
        int_field(&mut build, 4, self.num_replicas);
        int_field(&mut build, 5, self.num_partitions);
        let mut out = Vec::with_capacity(build.len() + 2);
        varint(&mut out, (3 << 3) | 2); // field 3, wire type 2 (length-delimited)
        varint(&mut out, build.len() as u64);
        out.extend_from_slice(&build);
        if self.portable {
            int_field(&mut out, 4, 1); // bool: varint 1
        }
        out
    }

    /// Checks the values the plugin would otherwise reject or abort on.
    ///
    /// # Errors
    /// [`crate::Error::InvalidOption`] for replicas or partitions below 1 or an ordinal below -1.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field, value: i64, constraint| crate::Error::InvalidOption {
            field,
            value: value.to_string(),
            constraint,
        };
        if self.num_replicas < 1 {
            return Err(bad("num_replicas", self.num_replicas, ">= 1"));
        }
        if self.num_partitions < 1 {
            return Err(bad("num_partitions", self.num_partitions, ">= 1"));
        }
        if self.device_ordinal < -1 {
            return Err(bad("device_ordinal", self.device_ordinal, ">= -1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_encode_to_golden_bytes() {
        let expected: Vec<u8> = vec![
            0x1a, 0x0f, // field 3, 15 bytes
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // device_ordinal = -1
            0x20, 0x01, // num_replicas = 1
            0x28, 0x01, // num_partitions = 1
        ];
        assert_eq!(CompileOptions::default().encode(), expected);
    }

    #[test]
    fn portable_adds_field_4() {
        let o = CompileOptions {
            portable: true,
            ..CompileOptions::default()
        };
        let mut expected = CompileOptions::default().encode();
        expected.extend_from_slice(&[0x20, 0x01]);
        assert_eq!(o.encode(), expected);
    }

    #[test]
    fn without_ordinal_matches_the_verified_minimal_bytes() {
        // DESIGN.md: `1a 04 20 01 28 01` compiles on the pinned plugin.
        let mut build = Vec::new();
        int_field(&mut build, 4, 1);
        int_field(&mut build, 5, 1);
        assert_eq!(build, [0x20, 0x01, 0x28, 0x01]);
    }

    #[test]
    fn validate_rejects_zero_replicas() {
        let o = CompileOptions {
            num_replicas: 0,
            ..CompileOptions::default()
        };
        assert!(o.validate().is_err());
        assert!(CompileOptions::default().validate().is_ok());
    }
}
