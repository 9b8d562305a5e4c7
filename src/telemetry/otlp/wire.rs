//! The protobuf wire format, by hand: tags, varints, length-delimited fields and the
//! constant parts of spans and events, made when compiling.

#[allow(clippy::wildcard_imports)]
use super::*;

// Protobuf, by hand: tags, varints, length-delimited fields. Every message's length is
// computed before it is written (no scratch buffer per message), constant parts are copied as
// constants, and nothing is allocated: a request with four spans is encoded in about a tenth
// of what a generic writer took (callgrind, bench/sinks.sh MODE=instructions).

#[inline]
pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of `v` as a varint (lengths are mostly under 128: one comparison).
#[inline(always)]
pub(super) fn varint_len(v: u64) -> usize {
    if v < 1 << 7 {
        1
    } else if v < 1 << 14 {
        2
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(7)
    }
}

/// Bytes of a length-delimited field of `len` bytes (every field here has a one-byte tag).
#[inline]
pub(super) fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A length-delimited field: its one-byte tag, its length, its bytes.
#[inline]
pub(super) fn bytes_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `KeyValue.key` (tag, length, bytes) of a key, made when compiling.
pub(super) const fn key_field_bytes<const N: usize>(key: &str) -> [u8; N] {
    let key = key.as_bytes();
    assert!(key.len() < 128 && key.len() + 2 == N);
    let mut out = [0; N];
    out[0] = 0x0a;
    out[1] = key.len() as u8;
    copy_at(&mut out, 2, key);
    out
}

/// `bytes` copied into `out` from `at`, when compiling.
pub(super) const fn copy_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
}

macro_rules! key_field {
    ($key:expr) => {{
        const FIELD: [u8; $key.len() + 2] = key_field_bytes($key);
        &FIELD
    }};
}
pub(super) use key_field;

/// A `KeyValue` field of a double up to the value's 8 bytes (tag, length, key, the value's
/// tags), made when compiling.
pub(super) const fn double_field<const N: usize>(tag: u8, key: &str) -> [u8; N] {
    let key = key.as_bytes();
    // KeyValue: the key's field, then the value's (tag, length 9, the double's tag, 8 bytes).
    assert!(key.len() + 13 < 128 && key.len() + 7 == N);
    let mut out = [0; N];
    out[0] = tag;
    out[1] = (key.len() + 13) as u8;
    out[2] = 0x0a;
    out[3] = key.len() as u8;
    copy_at(&mut out, 4, key);
    out[N - 3] = 0x12;
    out[N - 2] = 0x09;
    out[N - 1] = 0x21;
    out
}

pub(super) const SPAN_EXCLUSIVE: [u8; EXCLUSIVE_MS.len() + 7] = double_field(0x4a, EXCLUSIVE_MS);
pub(super) const SPAN_WALL: [u8; WALL_MS.len() + 7] = double_field(0x4a, WALL_MS);
pub(super) const EVENT_EXCLUSIVE: [u8; EXCLUSIVE_MS.len() + 7] = double_field(0x1a, EXCLUSIVE_MS);
pub(super) const EVENT_WALL: [u8; WALL_MS.len() + 7] = double_field(0x1a, WALL_MS);
/// Bytes of the exclusive and wall times as two `KeyValue` fields.
pub(super) const TIME_ATTRS: usize = EXCLUSIVE_MS.len() + 7 + 8 + WALL_MS.len() + 7 + 8;

/// The exclusive and wall times as two `KeyValue` fields (their heads from [`double_field`],
/// for a span or an event), put together on the stack and appended in one copy.
#[inline(always)]
pub(super) fn put_times(
    out: &mut Vec<u8>,
    (exclusive_head, exclusive_ms): (&[u8; EXCLUSIVE_MS.len() + 7], f64),
    (wall_head, wall_ms): (&[u8; WALL_MS.len() + 7], f64),
) {
    let mut attrs = [0u8; TIME_ATTRS];
    let (exclusive, wall) = attrs.split_at_mut(exclusive_head.len() + 8);
    exclusive[..exclusive_head.len()].copy_from_slice(exclusive_head);
    exclusive[exclusive_head.len()..].copy_from_slice(&exclusive_ms.to_bits().to_le_bytes());
    wall[..wall_head.len()].copy_from_slice(wall_head);
    wall[wall_head.len()..].copy_from_slice(&wall_ms.to_bits().to_le_bytes());
    out.extend_from_slice(&attrs);
}

/// `Span.trace_id` and `Span.span_id` as fields, put together on the stack.
#[inline(always)]
pub(super) fn ids_fields(trace_id: u128, span_id: u64) -> [u8; 28] {
    let mut ids = [0u8; 28];
    ids[..2].copy_from_slice(&[0x0a, 16]);
    ids[2..18].copy_from_slice(&trace_id.to_be_bytes());
    ids[18..20].copy_from_slice(&[0x12, 8]);
    ids[20..].copy_from_slice(&span_id.to_be_bytes());
    ids
}

/// `Span.kind`, `start_time_unix_nano` and `end_time_unix_nano` as fields.
#[inline(always)]
pub(super) fn times_fields(kind: u8, start_ns: u64, end_ns: u64) -> [u8; 20] {
    let mut times = [0u8; 20];
    times[..3].copy_from_slice(&[0x30, kind & 0x7f, 0x39]);
    times[3..11].copy_from_slice(&start_ns.to_le_bytes());
    times[11] = 0x41;
    times[12..].copy_from_slice(&end_ns.to_le_bytes());
    times
}

/// Bytes of an `AnyValue` message.
#[inline]
pub(super) fn value_len(value: Value<'_>) -> usize {
    match value {
        Value::Str(s) => field_len(s.len()),
        Value::Int(i) => 1 + varint_len(i as u64),
        Value::Double(_) => 9,
    }
}

/// Bytes of an attribute as a `KeyValue` field (0 if absent).
#[inline(always)]
pub(super) fn attr_field_len(attr: Attr<'_>) -> usize {
    match attr {
        Attr::Absent => 0,
        _ => field_len(2 + attr.key().len() + field_len(value_len(attr.value()))),
    }
}

/// A `KeyValue` with its tag; `key` is [`key_field_bytes`]'s.
#[inline(always)]
pub(super) fn put_attr<const N: usize>(
    out: &mut Vec<u8>,
    tag: u8,
    key: &[u8; N],
    value: Value<'_>,
) {
    if let Value::Str(s) = value {
        if N + 4 + s.len() < 128 {
            // Every length one byte (the common case): the attribute up to its text put
            // together on the stack, then the text.
            const { assert!(N + 6 <= 64) };
            let mut head = [0u8; 64];
            head[0] = tag;
            head[1] = (N + 4 + s.len()) as u8;
            head[2..2 + N].copy_from_slice(key);
            head[2 + N..6 + N].copy_from_slice(&[0x12, (2 + s.len()) as u8, 0x0a, s.len() as u8]);
            out.extend_from_slice(&head[..6 + N]);
            out.extend_from_slice(s.as_bytes());
            return;
        }
    }
    let len = value_len(value);
    out.push(tag);
    varint(out, (N + field_len(len)) as u64);
    out.extend_from_slice(key);
    match value {
        Value::Str(s) => {
            out.push(0x12);
            varint(out, len as u64);
            bytes_field(out, 0x0a, s.as_bytes());
        }
        Value::Int(i) => {
            // At most 11 bytes: the length is one byte.
            out.extend_from_slice(&[0x12, len as u8, 0x18]);
            varint(out, i as u64);
        }
        Value::Double(d) => {
            out.extend_from_slice(&[0x12, 0x09, 0x21]);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
    }
}

/// An attribute as a `KeyValue` field with tag `tag`. Inlined where the attributes are a
/// list of known kinds, so the match resolves when compiling.
#[inline(always)]
pub(super) fn attr(out: &mut Vec<u8>, tag: u8, attr: Attr<'_>) {
    let value = attr.value();
    match attr {
        Attr::Method(_) => put_attr(out, tag, key_field!(METHOD), value),
        Attr::Route(_) => put_attr(out, tag, key_field!(ROUTE), value),
        Attr::Status(_) => put_attr(out, tag, key_field!(STATUS), value),
        Attr::UrlPath(_) => put_attr(out, tag, key_field!(URL_PATH), value),
        Attr::Client(_) => put_attr(out, tag, key_field!(CLIENT), value),
        Attr::Server(_) => put_attr(out, tag, key_field!(SERVER), value),
        Attr::Middleware(_) => put_attr(out, tag, key_field!(MIDDLEWARE), value),
        Attr::ExclusiveMs(_) => put_attr(out, tag, key_field!(EXCLUSIVE_MS), value),
        Attr::WallMs(_) => put_attr(out, tag, key_field!(WALL_MS), value),
        Attr::PollMs(_) => put_attr(out, tag, key_field!(POLL_MS), value),
        Attr::Service(_) => put_attr(out, tag, key_field!(SERVICE), value),
        Attr::Absent => {}
    }
}
