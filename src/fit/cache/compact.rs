//! Smaller serialized executables of XLA:CPU: the bodies of fused computations removed.
//!
//! A serialized XLA:CPU executable holds the machine code, the thunk sequence, the buffer
//! assignment and the optimized HLO module. Loading it (`PJRT_Executable_DeserializeAndLoad`)
//! rebuilds that HLO module from its proto three times (and copies, prints and cost-analyses it),
//! so the load takes time in proportion to the module's instruction count: most of a first fit from
//! the disk cache. But once compiled, a fusion is a kernel in the machine code: nothing at run time
//! reads the instructions inside a fused computation (they define no buffers; the buffer
//! assignment, the thunks and the kernels refer to the fusion instruction only), and most
//! instructions of a fit program are such.
//!
//! [`compact_cpu_payload`] replaces each fused computation whose result is one array by its
//! parameters and a stand-in root of the same shape (a broadcast scalar zero), and leaves
//! everything else as it is, byte for byte (what it saves: docs/performance.md, "Figures behind the
//! runtime's choices"). The runtime applies it only to the pinned CPU plugin, and uses the
//! compacted executable for every fit (also right after compiling, so the whole test suite runs on
//! compacted executables).
//!
//! The format is protobuf (`xla.ExecutableAndOptionsProto` → `xla.cpu.CompilationResultProto`
//! → `xla.HloModuleProtoWithConfig` → `xla.HloModuleProto`); this module reads and writes the
//! wire format directly, field numbers from `xla/service/hlo.proto` and `xla/xla_data.proto`.
//! It is plain byte manipulation (no FFI): [`compacted`] and [`cpu_envelope_is_well_formed`]
//! reach the plugin's bytes through [`LoadedExecutable::serialize`] and nlsq's envelope.

use std::collections::HashSet;

use crate::pjrt::{envelope_head_len, LoadedExecutable};

/// `exe` serialized without what only the compiler needs (the bodies of its fused computations,
/// which run as machine code) and loaded again on its client: an equivalent executable whose
/// serialized form loads faster, for the disk cache. XLA:CPU only (other plugins' bytes are left
/// alone); `None` when the bytes are not of that form, nothing can be removed, or the plugin
/// does not accept the result.
pub(crate) fn compacted(exe: &LoadedExecutable) -> Option<LoadedExecutable> {
    let bytes = exe.serialize().ok()?;
    let head_len = envelope_head_len(&bytes).ok()?;
    let compact = compact_cpu_payload(&bytes[head_len..])?;
    let mut out = Vec::with_capacity(head_len + compact.len());
    out.extend_from_slice(&bytes[..head_len]);
    out.extend_from_slice(&compact);
    exe.client().deserialize(&out).ok()
}

/// True when `bytes` (an nlsq envelope, as [`LoadedExecutable::serialize`] gives) hold an XLA:CPU
/// executable whose HLO module is structurally sound (every operand, root and called
/// computation names something that exists); meaningful for the pinned CPU plugin only.
pub fn cpu_envelope_is_well_formed(bytes: &[u8]) -> bool {
    envelope_head_len(bytes).is_ok_and(|head| cpu_payload_is_well_formed(&bytes[head..]))
}

/// One field of a protobuf message: its number, value and the bytes it was read from.
#[derive(Clone, Copy)]
struct Field<'a> {
    number: u64,
    value: Value<'a>,
    raw: &'a [u8],
}

#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of a message, or `None` when the bytes are not well-formed wire format.
fn parse(buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = read_varint(buf, &mut pos)?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|&e| e <= buf.len())?;
                let v = &buf[pos..end];
                pos = end;
                Value::Bytes(v)
            }
            _ => return None,
        };
        if pos > buf.len() {
            return None;
        }
        out.push(Field {
            number: key >> 3,
            value,
            raw: &buf[start..pos],
        });
    }
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_uint(out: &mut Vec<u8>, number: u64, v: u64) {
    put_varint(out, number << 3);
    put_varint(out, v);
}

/// Every field `number` of `fields` parsed as a message; `None` when one is not a message.
fn messages<'a>(fields: &[Field<'a>], number: u64) -> Option<Vec<Vec<Field<'a>>>> {
    fields
        .iter()
        .filter(|f| f.number == number)
        .map(|f| match f.value {
            Value::Bytes(b) => parse(b),
            _ => None,
        })
        .collect()
}

fn bytes_of<'a>(fields: &[Field<'a>], number: u64) -> Option<&'a [u8]> {
    fields.iter().find(|f| f.number == number).and_then(|f| match f.value {
        Value::Bytes(b) => Some(b),
        _ => None,
    })
}

fn uint_of(fields: &[Field<'_>], number: u64) -> Option<u64> {
    fields.iter().find(|f| f.number == number).and_then(|f| match f.value {
        Value::Varint(v) => Some(v),
        _ => None,
    })
}

/// A repeated integer field, packed or not.
fn uints_of(fields: &[Field<'_>], number: u64) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for f in fields.iter().filter(|f| f.number == number) {
        match f.value {
            Value::Varint(v) => out.push(v),
            Value::Bytes(b) => {
                let mut pos = 0;
                while pos < b.len() {
                    out.push(read_varint(b, &mut pos)?);
                }
            }
            Value::Fixed => return None,
        }
    }
    Some(out)
}

/// `fields` with the single bytes field `number` replaced by `replace(its bytes)`.
fn rewrite(buf: &[u8], number: u64, replace: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let fields = parse(buf)?;
    if fields.iter().filter(|f| f.number == number).count() != 1 {
        return None;
    }
    let inner = replace(bytes_of(&fields, number)?)?;
    let mut out = Vec::with_capacity(buf.len());
    for f in &fields {
        if f.number == number {
            put_bytes(&mut out, number, &inner);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Some(out)
}

// Field numbers.
const MODULE_COMPUTATIONS: u64 = 3;
const COMPUTATION_INSTRUCTIONS: u64 = 2;
const COMPUTATION_ID: u64 = 5;
const COMPUTATION_ROOT_ID: u64 = 6;
const INSTRUCTION_NAME: u64 = 1;
const INSTRUCTION_OPCODE: u64 = 2;
const INSTRUCTION_SHAPE: u64 = 3;
const INSTRUCTION_LITERAL: u64 = 8;
const INSTRUCTION_ID: u64 = 35;
const INSTRUCTION_OPERAND_IDS: u64 = 36;
const INSTRUCTION_CALLED_COMPUTATION_IDS: u64 = 38;
const SHAPE_ELEMENT_TYPE: u64 = 2;
const SHAPE_LAYOUT: u64 = 5;
const LITERAL_SHAPE: u64 = 1;

/// The scalar zero of an element type as a `LiteralProto` value field: (field, bytes).
fn zero_literal_value(element_type: u64) -> Option<(u64, Vec<u8>)> {
    // xla.PrimitiveType: PRED 1, S8 2, S32 4, S64 5, U8 6, U32 8, U64 9, F32 11, F64 12.
    Some(match element_type {
        1 => (2, vec![0]),     // repeated bool preds (packed)
        2 => (15, vec![0]),    // bytes s8s
        4 => (4, vec![0]),     // repeated int32 s32s (packed)
        5 => (5, vec![0]),     // repeated int64 s64s
        6 => (3, vec![0]),     // bytes u8s
        8 => (6, vec![0]),     // repeated uint32 u32s
        9 => (7, vec![0]),     // repeated uint64 u64s
        11 => (8, vec![0; 4]), // repeated float f32s (packed fixed32)
        12 => (9, vec![0; 8]), // repeated double f64s (packed fixed64)
        _ => return None,
    })
}

/// A fused computation reduced to its parameters and `broadcast(constant 0)` of its result
/// shape, or `None` to keep it (a tuple result, an element type without a literal here).
fn stub_computation(computation: &[u8]) -> Option<Vec<u8>> {
    let fields = parse(computation)?;
    let root_id = uint_of(&fields, COMPUTATION_ROOT_ID)?;
    let instructions = fields
        .iter()
        .filter(|f| f.number == COMPUTATION_INSTRUCTIONS)
        .map(|f| match f.value {
            Value::Bytes(b) => parse(b),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let root = instructions
        .iter()
        .find(|i| uint_of(i, INSTRUCTION_ID) == Some(root_id))?;
    if bytes_of(root, INSTRUCTION_OPCODE) == Some(b"parameter") {
        return None;
    }
    let is_parameter = |i: &&Vec<Field<'_>>| bytes_of(i, INSTRUCTION_OPCODE) == Some(b"parameter");
    if instructions.iter().filter(|i| !is_parameter(i)).count() <= 2 {
        // Already as small as the stand-in (or a stand-in): nothing to gain.
        return None;
    }
    let root_shape = bytes_of(root, INSTRUCTION_SHAPE)?;
    let element_type = uint_of(&parse(root_shape)?, SHAPE_ELEMENT_TYPE)?;
    let (value_field, zero) = zero_literal_value(element_type)?;
    let root_name = bytes_of(root, INSTRUCTION_NAME)?;

    // Instruction ids are (computation id << 32) | local id, local ids dense from 0.
    let high = root_id & !0xffff_ffff;
    let mut out = Vec::new();
    let mut local = 0u64;
    for params in instructions.iter().filter(is_parameter) {
        let mut p = Vec::new();
        for f in params {
            if f.number == INSTRUCTION_ID {
                put_uint(&mut p, INSTRUCTION_ID, high | local);
            } else {
                p.extend_from_slice(f.raw);
            }
        }
        put_bytes(&mut out, COMPUTATION_INSTRUCTIONS, &p);
        local += 1;
    }
    // A scalar of the root's element type, with the default layout.
    let mut scalar = Vec::new();
    put_uint(&mut scalar, SHAPE_ELEMENT_TYPE, element_type);
    put_bytes(&mut scalar, SHAPE_LAYOUT, &[0x80, 0x01, 0x01]); // tail_padding_alignment_in_elements: 1
    let mut literal = Vec::new();
    put_bytes(&mut literal, LITERAL_SHAPE, &scalar);
    put_bytes(&mut literal, value_field, &zero);
    let constant_id = high | local;
    let mut constant = Vec::new();
    let mut name = root_name.to_vec();
    name.extend_from_slice(b".nlsq_zero");
    put_bytes(&mut constant, INSTRUCTION_NAME, &name);
    put_bytes(&mut constant, INSTRUCTION_OPCODE, b"constant");
    put_bytes(&mut constant, INSTRUCTION_SHAPE, &scalar);
    put_bytes(&mut constant, INSTRUCTION_LITERAL, &literal);
    put_uint(&mut constant, INSTRUCTION_ID, constant_id);
    put_bytes(&mut out, COMPUTATION_INSTRUCTIONS, &constant);
    let broadcast_id = high | (local + 1);
    let mut broadcast = Vec::new();
    put_bytes(&mut broadcast, INSTRUCTION_NAME, root_name);
    put_bytes(&mut broadcast, INSTRUCTION_OPCODE, b"broadcast");
    put_bytes(&mut broadcast, INSTRUCTION_SHAPE, root_shape);
    put_uint(&mut broadcast, INSTRUCTION_ID, broadcast_id);
    let mut operands = Vec::new();
    put_varint(&mut operands, constant_id);
    put_bytes(&mut broadcast, INSTRUCTION_OPERAND_IDS, &operands);
    put_bytes(&mut out, COMPUTATION_INSTRUCTIONS, &broadcast);
    for f in &fields {
        match f.number {
            COMPUTATION_INSTRUCTIONS => {}
            COMPUTATION_ROOT_ID => put_uint(&mut out, COMPUTATION_ROOT_ID, broadcast_id),
            _ => out.extend_from_slice(f.raw),
        }
    }
    Some(out)
}

/// The `HloModuleProto` with its fused computations stubbed, or `None` when none was.
fn compact_module(module: &[u8]) -> Option<Vec<u8>> {
    let fields = parse(module)?;
    let computations: Vec<&[u8]> = fields
        .iter()
        .filter(|f| f.number == MODULE_COMPUTATIONS)
        .map(|f| match f.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let mut fused = HashSet::new();
    for c in &computations {
        for f in parse(c)?.iter().filter(|f| f.number == COMPUTATION_INSTRUCTIONS) {
            let Value::Bytes(b) = f.value else { return None };
            let instruction = parse(b)?;
            if bytes_of(&instruction, INSTRUCTION_OPCODE) == Some(b"fusion") {
                fused.extend(uints_of(&instruction, INSTRUCTION_CALLED_COMPUTATION_IDS)?);
            }
        }
    }
    let mut out = Vec::with_capacity(module.len());
    let mut stubbed = 0;
    for f in &fields {
        if f.number == MODULE_COMPUTATIONS {
            let Value::Bytes(c) = f.value else { return None };
            let id = uint_of(&parse(c)?, COMPUTATION_ID)?;
            if fused.contains(&id) {
                if let Some(stub) = stub_computation(c) {
                    put_bytes(&mut out, MODULE_COMPUTATIONS, &stub);
                    stubbed += 1;
                    continue;
                }
            }
        }
        out.extend_from_slice(f.raw);
    }
    (stubbed > 0).then_some(out)
}

/// A serialized XLA:CPU executable (the plugin's bytes, as `PJRT_Executable_Serialize` gives
/// them) with the bodies of its fused computations replaced by stand-ins; `None` when the bytes
/// are not of that form or there is nothing to remove. The result must still be loaded to be
/// trusted: only the plugin can say it accepts it.
pub(crate) fn compact_cpu_payload(payload: &[u8]) -> Option<Vec<u8>> {
    // ExecutableAndOptionsProto.serialized_executable (1) → CompilationResultProto.hlo_module
    // (1, HloModuleProtoWithConfig) → .hlo_module (1, HloModuleProto).
    rewrite(payload, 1, |executable| {
        rewrite(executable, 1, |with_config| rewrite(with_config, 1, compact_module))
    })
}

/// True when a serialized XLA:CPU executable is well-formed as far as the HLO module goes: every
/// message on the path to it parses as wire format, and in each computation every operand, the
/// root and every called computation name an instruction or computation that exists. A cache
/// entry whose checksum matches but whose bytes were damaged before it was written (or
/// edited) is refused here instead of crashing or hanging the plugin's loader on dangling ids.
pub(crate) fn cpu_payload_is_well_formed(payload: &[u8]) -> bool {
    let inner = |buf: &[u8]| parse(buf).and_then(|f| bytes_of(&f, 1).map(<[u8]>::to_vec));
    let Some(module) = inner(payload).and_then(|e| inner(&e)).and_then(|w| inner(&w)) else {
        return false;
    };
    let Some(fields) = parse(&module) else { return false };
    let computations = match messages(&fields, MODULE_COMPUTATIONS) {
        Some(c) if !c.is_empty() => c,
        _ => return false,
    };
    let computation_ids: HashSet<u64> = computations.iter().filter_map(|c| uint_of(c, COMPUTATION_ID)).collect();
    computations.iter().all(|c| {
        let Some(instructions) = messages(c, COMPUTATION_INSTRUCTIONS) else {
            return false;
        };
        let ids: HashSet<u64> = instructions.iter().filter_map(|i| uint_of(i, INSTRUCTION_ID)).collect();
        let root_ok = uint_of(c, COMPUTATION_ROOT_ID).map_or(true, |r| ids.contains(&r));
        root_ok
            && instructions.iter().all(|i| {
                let operands_ok =
                    uints_of(i, INSTRUCTION_OPERAND_IDS).is_some_and(|o| o.iter().all(|o| ids.contains(o)));
                let called_ok = uints_of(i, INSTRUCTION_CALLED_COMPUTATION_IDS)
                    .is_some_and(|o| o.iter().all(|o| computation_ids.contains(o)));
                operands_ok && called_ok
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instruction(name: &str, opcode: &str, id: u64, shape: &[u8], operands: &[u64], called: &[u64]) -> Vec<u8> {
        let mut i = Vec::new();
        put_bytes(&mut i, INSTRUCTION_NAME, name.as_bytes());
        put_bytes(&mut i, INSTRUCTION_OPCODE, opcode.as_bytes());
        put_bytes(&mut i, INSTRUCTION_SHAPE, shape);
        put_uint(&mut i, INSTRUCTION_ID, id);
        if !operands.is_empty() {
            let mut p = Vec::new();
            operands.iter().for_each(|&o| put_varint(&mut p, o));
            put_bytes(&mut i, INSTRUCTION_OPERAND_IDS, &p);
        }
        for &c in called {
            put_uint(&mut i, INSTRUCTION_CALLED_COMPUTATION_IDS, c);
        }
        i
    }

    fn computation(name: &str, id: u64, root: u64, instructions: &[Vec<u8>]) -> Vec<u8> {
        let mut c = Vec::new();
        for i in instructions {
            put_bytes(&mut c, COMPUTATION_INSTRUCTIONS, i);
        }
        put_bytes(&mut c, 1, name.as_bytes());
        put_uint(&mut c, COMPUTATION_ID, id);
        put_uint(&mut c, COMPUTATION_ROOT_ID, root);
        c
    }

    fn f64_vector(n: u64) -> Vec<u8> {
        let mut s = Vec::new();
        put_uint(&mut s, SHAPE_ELEMENT_TYPE, 12);
        put_uint(&mut s, 3, n);
        s
    }

    /// ExecutableAndOptionsProto { 1: { 1: { 1: module, 2: config }, 2: buffers }, 2: options }.
    fn envelope(module: &[u8]) -> Vec<u8> {
        let mut with_config = Vec::new();
        put_bytes(&mut with_config, 1, module);
        put_bytes(&mut with_config, 2, b"config");
        let mut executable = Vec::new();
        put_bytes(&mut executable, 1, &with_config);
        put_bytes(&mut executable, 2, b"buffer assignment");
        put_uint(&mut executable, 5, 2);
        let mut out = Vec::new();
        put_bytes(&mut out, 1, &executable);
        put_bytes(&mut out, 2, b"compile options");
        out
    }

    fn module_of(payload: &[u8]) -> Vec<u8> {
        let e = bytes_of(&parse(payload).unwrap(), 1).unwrap();
        let w = bytes_of(&parse(e).unwrap(), 1).unwrap();
        bytes_of(&parse(w).unwrap(), 1).unwrap().to_vec()
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, 1 << 32 | 5, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
        assert_eq!(read_varint(&[0x80], &mut 0), None, "truncated");
        assert!(parse(&[0x0a, 0x05, 1, 2]).is_none(), "length past the end");
        assert!(parse(&[0x0b]).is_none(), "wire type 3");
    }

    #[test]
    fn fused_bodies_become_parameters_and_a_stand_in_root() {
        let v = f64_vector(4);
        // Computation 1 (fused): p0, p1, add, negate, multiply (root). Computation 2 (entry):
        // two parameters and a fusion calling 1.
        let hi1 = 1u64 << 32;
        let fused = computation(
            "fused_computation",
            1,
            hi1 | 4,
            &[
                instruction("param_0", "parameter", hi1, &v, &[], &[]),
                instruction("add.1", "add", hi1 | 1, &v, &[hi1, hi1 | 2], &[]),
                instruction("param_1", "parameter", hi1 | 2, &v, &[], &[]),
                instruction("negate.1", "negate", hi1 | 3, &v, &[hi1 | 1], &[]),
                instruction("multiply.1", "multiply", hi1 | 4, &v, &[hi1 | 3, hi1 | 2], &[]),
            ],
        );
        let hi2 = 2u64 << 32;
        let entry = computation(
            "main",
            2,
            hi2 | 2,
            &[
                instruction("x", "parameter", hi2, &v, &[], &[]),
                instruction("y", "parameter", hi2 | 1, &v, &[], &[]),
                instruction("fusion", "fusion", hi2 | 2, &v, &[hi2, hi2 | 1], &[1]),
            ],
        );
        let mut module = Vec::new();
        put_bytes(&mut module, 1, b"m");
        put_bytes(&mut module, MODULE_COMPUTATIONS, &fused);
        put_bytes(&mut module, MODULE_COMPUTATIONS, &entry);
        put_uint(&mut module, 6, 2);
        let payload = envelope(&module);
        assert!(cpu_payload_is_well_formed(&payload));
        // Dangling references, a broken length, a truncation: refused.
        let dangling_operand = computation(
            "main",
            2,
            hi2 | 1,
            &[
                instruction("x", "parameter", hi2, &v, &[], &[]),
                instruction("neg", "negate", hi2 | 1, &v, &[hi2 | 7], &[]),
            ],
        );
        let dangling_call = computation("main", 2, hi2, &[instruction("fusion", "fusion", hi2, &v, &[], &[9])]);
        let dangling_root = computation("main", 2, hi2 | 5, &[instruction("x", "parameter", hi2, &v, &[], &[])]);
        for bad in [dangling_operand, dangling_call, dangling_root] {
            let mut m = Vec::new();
            put_bytes(&mut m, MODULE_COMPUTATIONS, &bad);
            assert!(!cpu_payload_is_well_formed(&envelope(&m)));
        }
        assert!(!cpu_payload_is_well_formed(&payload[..payload.len() - 7]));
        assert!(!cpu_payload_is_well_formed(&envelope(b"")));
        let compacted = compact_cpu_payload(&payload).expect("one fusion to stub");
        assert!(cpu_payload_is_well_formed(&compacted));

        // Everything but the fused computation is byte for byte the same.
        let out = parse(&compacted).unwrap();
        assert_eq!(bytes_of(&out, 2), Some(b"compile options".as_slice()));
        let m = module_of(&compacted);
        let fields = parse(&m).unwrap();
        let comps: Vec<&[u8]> = fields
            .iter()
            .filter(|f| f.number == MODULE_COMPUTATIONS)
            .map(|f| match f.value {
                Value::Bytes(b) => b,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(comps[1], entry.as_slice());
        assert_eq!(uint_of(&fields, 6), Some(2));

        let c = parse(comps[0]).unwrap();
        let insts: Vec<Vec<Field<'_>>> = c
            .iter()
            .filter(|f| f.number == COMPUTATION_INSTRUCTIONS)
            .map(|f| match f.value {
                Value::Bytes(b) => parse(b).unwrap(),
                _ => unreachable!(),
            })
            .collect();
        let summary: Vec<(&[u8], &[u8], u64)> = insts
            .iter()
            .map(|i| {
                (
                    bytes_of(i, INSTRUCTION_NAME).unwrap(),
                    bytes_of(i, INSTRUCTION_OPCODE).unwrap(),
                    uint_of(i, INSTRUCTION_ID).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (b"param_0".as_slice(), b"parameter".as_slice(), hi1),
                (b"param_1", b"parameter", hi1 | 1),
                (b"multiply.1.nlsq_zero", b"constant", hi1 | 2),
                (b"multiply.1", b"broadcast", hi1 | 3),
            ]
        );
        assert_eq!(uint_of(&c, COMPUTATION_ROOT_ID), Some(hi1 | 3));
        assert_eq!(bytes_of(&insts[3], INSTRUCTION_SHAPE), Some(v.as_slice()));
        assert_eq!(uints_of(&insts[3], INSTRUCTION_OPERAND_IDS), Some(vec![hi1 | 2]));
        assert_eq!(bytes_of(&c, 1), Some(b"fused_computation".as_slice()));

        // Nothing left to remove the second time; other bytes are not executables.
        assert!(compact_cpu_payload(&compacted).is_none());
        assert!(compact_cpu_payload(b"not a protobuf \xff\xff").is_none());
        assert!(compact_cpu_payload(&[]).is_none());
    }
}
