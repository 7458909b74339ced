//! Trace and segment identifiers: parsing, formatting and random generation.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU64;
use std::time::{SystemTime, UNIX_EPOCH};

/// A 64-bit segment, subsegment or exception id: 16 lowercase hex digits on the wire,
/// never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(NonZeroU64);

impl SegmentId {
    /// A fresh random id.
    pub fn random() -> Self {
        loop {
            if let Some(v) = NonZeroU64::new(next_random()) {
                return SegmentId(v);
            }
        }
    }

    /// Parses 16 hex digits (either case). All zeros is not an id.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        parse_hex_u64(s.as_bytes())
            .and_then(NonZeroU64::new)
            .map(SegmentId)
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The 16 hex digits written on the wire.
    pub(crate) fn to_hex(self) -> [u8; 16] {
        hex_u64(self.0.get()).0
    }

    /// The id `v` is, if it is not zero.
    pub(crate) fn from_u64(v: u64) -> Option<Self> {
        NonZeroU64::new(v).map(SegmentId)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_u64(self.0.get()))
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({self})")
    }
}

impl serde::Serialize for SegmentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_u64(self.0.get()))
    }
}

/// An X-Ray trace id, `1-{8 hex: epoch seconds}-{24 hex: random}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId {
    epoch: u32,
    random: [u8; 12],
}

impl TraceId {
    /// The length of a trace id on the wire.
    pub const LEN: usize = 35;

    /// A fresh trace id stamped with the current time, for traces this process starts
    /// itself (outside Lambda).
    pub fn new() -> Self {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let mut random = [0u8; 12];
        random[..8].copy_from_slice(&next_random().to_be_bytes());
        random[8..].copy_from_slice(&(next_random() as u32).to_be_bytes());
        TraceId { epoch, random }
    }

    /// Parses `1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx` (hex digits in either case).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != Self::LEN || &b[..2] != b"1-" || b[10] != b'-' {
            return None;
        }
        let epoch = parse_hex_u64(&b[2..10])? as u32;
        let hi = parse_hex_u64(&b[11..27])?;
        let lo = parse_hex_u64(&b[27..35])? as u32;
        let mut random = [0u8; 12];
        random[..8].copy_from_slice(&hi.to_be_bytes());
        random[8..].copy_from_slice(&lo.to_be_bytes());
        Some(TraceId { epoch, random })
    }

    /// The epoch seconds encoded in the id.
    pub fn epoch_seconds(self) -> u32 {
        self.epoch
    }

    /// The id as it is written on the wire.
    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        self.write_to(&mut out);
        out
    }

    fn write_to(self, out: &mut [u8; Self::LEN]) {
        out[0] = b'1';
        out[1] = b'-';
        write_hex(&mut out[2..10], self.epoch as u64);
        out[10] = b'-';
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&self.random[..8]);
        let mut lo = [0u8; 4];
        lo.copy_from_slice(&self.random[8..]);
        write_hex(&mut out[11..27], u64::from_be_bytes(hi));
        write_hex(&mut out[27..35], u32::from_be_bytes(lo) as u64);
    }

    pub(crate) fn with_str<R>(self, f: impl FnOnce(&str) -> R) -> R {
        let mut buf = [0u8; Self::LEN];
        self.write_to(&mut buf);
        // Only ASCII hex digits and dashes were written.
        f(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|s| f.write_str(s))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_str(|v| s.serialize_str(v))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn hex_u64(v: u64) -> HexU64 {
    let mut buf = [0u8; 16];
    write_hex(&mut buf, v);
    HexU64(buf)
}

/// 16 hex digits on the stack, so ids format without allocating.
struct HexU64([u8; 16]);

impl std::ops::Deref for HexU64 {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn parse_hex_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = HEX_VALUES[usize::from(d)];
        (v != NOT_HEX).then_some(acc << 4 | u64::from(v))
    })
}

/// Marks a byte that is not a hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0xff;

/// Each byte's value as a hex digit, either case: one load per digit where a match on
/// three ranges is several branches (ids are parsed from every trace header).
static HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = d as u8;
        d += 1;
    }
    let mut d = 0;
    while d < 6 {
        table[b'a' as usize + d] = 10 + d as u8;
        table[b'A' as usize + d] = 10 + d as u8;
        d += 1;
    }
    table
};

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// Per-thread seed from the OS-randomised `RandomState`, so ids differ across threads,
/// processes and Lambda sandboxes without a dependency on an RNG crate.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// wyrand: fast, statistically solid, and plenty for ids that only need to be unique.
/// Ids are also made while the thread's locals are being torn down (a guard dropped by a
/// thread-local destructor); the state may be gone by then, and a fresh seed serves.
pub(crate) fn next_random() -> u64 {
    let s = RNG
        .try_with(|state| {
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            s
        })
        .unwrap_or_else(|_| seed());
    let t = (s as u128).wrapping_mul((s ^ 0xe703_7ed1_a0b4_28db) as u128);
    ((t >> 64) as u64) ^ (t as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_ids_are_16_lowercase_hex_and_distinct() {
        let a = SegmentId::random();
        let b = SegmentId::random();
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 16);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(SegmentId::parse(&s), Some(a));
    }

    #[test]
    fn every_byte_has_its_hex_value_or_none() {
        for b in 0..=255u8 {
            let expected = char::from(b).to_digit(16).map_or(NOT_HEX, |d| d as u8);
            assert_eq!(HEX_VALUES[usize::from(b)], expected, "byte {b}");
        }
    }

    #[test]
    fn segment_id_rejects_zero_and_bad_input() {
        assert_eq!(SegmentId::parse("0000000000000000"), None);
        assert_eq!(SegmentId::parse("53995c3f42cd8ad"), None);
        assert_eq!(SegmentId::parse("53995c3f42cd8adg"), None);
        assert_eq!(SegmentId::parse("53995c3f42cd8ad8a"), None);
        assert_eq!(
            SegmentId::parse("53995C3F42CD8AD8").map(|s| s.to_string()),
            Some("53995c3f42cd8ad8".to_string())
        );
    }

    #[test]
    fn trace_id_round_trips() {
        let s = "1-5759e988-bd862e3fe1be46a994272793";
        let id = TraceId::parse(s).unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(id.epoch_seconds(), 0x5759e988);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
    }

    #[test]
    fn trace_id_rejects_malformed() {
        for bad in [
            "",
            "2-5759e988-bd862e3fe1be46a994272793",
            "1-5759e988-bd862e3fe1be46a99427279",
            "1-5759e988bd862e3fe1be46a994272793x",
            "1-5759e98x-bd862e3fe1be46a994272793",
            "1-5759e988-bd862e3fe1be46a99427279z",
            "1-5759e988-bd862e3fe1be46a9942727930",
        ] {
            assert_eq!(TraceId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn new_trace_ids_carry_the_time_and_differ() {
        let a = TraceId::new();
        let b = TraceId::new();
        assert_ne!(a, b);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        assert!(now - a.epoch_seconds() < 5);
        assert_eq!(TraceId::parse(&a.to_string()), Some(a));
    }
}
