//! Ids, times and the W3C trace context read from a request.

/// A random non-zero id. Trace and span ids need to be unique, not secret: a thread's own
/// wyrand generator (`fastrand`, seeded from the operating system's randomness) costs a few
/// instructions where a CSPRNG took a hundred, as the OpenTelemetry SDK's small generator does.
pub(super) fn random_u128() -> u128 {
    fastrand::u128(..).max(1)
}

pub(super) fn random_u64() -> u64 {
    fastrand::u64(..).max(1)
}

pub(super) use crate::clock::wall_ns as now_ns;

pub(super) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub(super) const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A W3C `traceparent`: the trace id, the parent span id and whether it is sampled.
pub(super) fn traceparent(value: &str) -> Option<(u128, u64, bool)> {
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let version = &b[..2];
    if !hex(version) || version == b"ff" || (version == b"00" && b.len() != 55) {
        return None;
    }
    if b.len() > 55 && b[55] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&b[3..35], &b[36..52], &b[53..55]);
    if !hex(trace) || !hex(parent) || !hex(flags) {
        return None;
    }
    let trace = u128::from_str_radix(&value[3..35], 16).ok()?;
    let parent = u64::from_str_radix(&value[36..52], 16).ok()?;
    let flags = u8::from_str_radix(&value[53..55], 16).ok()?;
    (trace != 0 && parent != 0).then_some((trace, parent, flags & 1 == 1))
}

/// A `Host` without its port (`[::1]:8080` → `[::1]`).
pub(super) fn without_port(host: &str) -> &str {
    let digits = host.bytes().rev().take_while(u8::is_ascii_digit).count();
    match host.len().checked_sub(digits + 1) {
        Some(colon) if digits > 0 && host.as_bytes()[colon] == b':' => &host[..colon],
        _ => host,
    }
}
