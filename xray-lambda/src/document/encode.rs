//! Writing documents. Each record is encoded once, when it ends, as a nested subsegment
//! with the subsegments that ended under it inside ([`Subtree`]); the fields only a
//! document sent on its own needs (`trace_id`, `parent_id`, `type`) are put in front
//! when it is sent. Nesting a child is then a copy of its bytes, and every size is
//! known exactly.

use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Reverse;

use serde::Serialize;

use super::{
    AnnotationValue, Aws, Http, Kind, MetadataValue, Record, Shrink, Timestamp, MAX_HTTP_FIELD,
};
use crate::id::{SegmentId, TraceId};
use crate::spare;

/// The most bytes the fields of a document sent on its own add in front of a subtree:
/// `{"trace_id":"<35>","parent_id":"<16>","type":"subsegment",` is 96.
pub(crate) const MAX_DOCUMENT_PREFIX: usize = 100;

/// Levels of subsegments one document nests at most; a subtree deeper than that is
/// sent on its own. JSON readers limit nesting (serde_json to 128 levels, and each
/// level of subsegments is two: an array and an object).
pub(crate) const MAX_NESTING: u32 = 32;

const SUBSEGMENTS_OPEN: &[u8] = b",\"subsegments\":[";
/// A children buffer's first size, in bytes and in children.
const INITIAL_BUFFER: usize = 2048;
const INITIAL_CHILDREN: usize = 16;
/// `]}` after the nested subsegments.
const SUBSEGMENTS_CLOSE: usize = 2;

/// The finished children of a record, waiting to be nested in its `subsegments`: each
/// encoded with its own finished children inside, one after another in one buffer (so
/// a leaf subsegment costs no allocation of its own), and each still separable to be
/// sent early on its own.
#[derive(Clone, Debug, Default)]
pub(crate) struct Children {
    json: Vec<u8>,
    items: Vec<Child>,
    /// Subsegments in all of them.
    count: usize,
}

/// Where one child is in [`Children::json`], and what it holds.
#[derive(Clone, Copy, Debug)]
struct Child {
    start: usize,
    len: usize,
    /// Subsegments in it, itself included.
    count: usize,
    /// Levels of subsegments nested below it.
    depth: u32,
    id: SegmentId,
    trace_id: TraceId,
    parent_id: Option<SegmentId>,
}

impl Children {
    /// Bytes of all of them.
    pub(crate) fn bytes(&self) -> usize {
        self.json.len()
    }

    /// Subsegments in all of them.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The ids of the children, with their sizes.
    pub(crate) fn sizes(&self) -> impl Iterator<Item = (SegmentId, usize)> + '_ {
        self.items.iter().map(|c| (c.id, c.len))
    }

    /// Encodes `record` as one more child, shrunk if it would not fit in `limit` bytes on
    /// its own, with as many of `its_children` nested as fit: the largest of them, and
    /// any nested too deep, are given back (largest first) to be sent on their own.
    pub(crate) fn add(
        &mut self,
        record: &mut Record,
        its_children: &Children,
        limit: usize,
    ) -> (Vec<Subtree>, Option<Shrunk>) {
        let (_, overflow, shrunk) = self.push(record, its_children, limit);
        (overflow, shrunk)
    }

    fn push(
        &mut self,
        record: &mut Record,
        its_children: &Children,
        limit: usize,
    ) -> (Child, Vec<Subtree>, Option<Shrunk>) {
        if self.json.capacity() == 0 {
            // Room for a few dozen small children at once, rather than growing a few
            // bytes at a time; as much as a sent subtree needed, when one is spare.
            self.json = spare::take(INITIAL_BUFFER + its_children.json.len());
        }
        if self.items.capacity() == 0 {
            self.items = spare::take(INITIAL_CHILDREN);
        }
        let start = self.json.len();
        let shrunk = write_fitting(record, &mut self.json, start, limit);
        let own = self.json.len() - start;
        let room = limit.saturating_sub(own + SUBSEGMENTS_OPEN.len() + SUBSEGMENTS_CLOSE);
        let (nested, overflow) = match its_children.fit(room) {
            Some((nested, overflow)) => (Cow::Owned(nested), overflow),
            None => (Cow::Borrowed(its_children.items.as_slice()), Vec::new()),
        };
        let mut count = 1;
        let mut depth = 0;
        for (i, child) in nested.iter().enumerate() {
            self.json
                .extend_from_slice(if i == 0 { SUBSEGMENTS_OPEN } else { b"," });
            self.json.extend_from_slice(its_children.slice(child));
            count += child.count;
            depth = depth.max(child.depth + 1);
        }
        if !nested.is_empty() {
            self.json.push(b']');
        }
        self.json.push(b'}');
        let child = Child {
            start,
            len: self.json.len() - start,
            count,
            depth,
            id: record.id,
            trace_id: record.trace_id,
            parent_id: record.parent_id,
        };
        self.items.push(child);
        self.count += count;
        if overflow.is_empty() {
            return (child, Vec::new(), shrunk);
        }
        let overflow = overflow
            .into_iter()
            .map(|c| its_children.subtree(&c, Kind::Subsegment))
            .collect();
        (child, overflow, shrunk)
    }

    /// Empties it, its buffers kept for the next children on this thread. Inline: most
    /// nodes end with no children, and then this is two checks.
    #[inline]
    pub(crate) fn recycle(&mut self) {
        if self.json.capacity() > 0 {
            spare::give(std::mem::take(&mut self.json));
        }
        if self.items.capacity() > 0 {
            spare::give(std::mem::take(&mut self.items));
        }
        self.count = 0;
    }

    /// Moves `other`'s children after these.
    pub(crate) fn append(&mut self, other: Children) {
        let offset = self.json.len();
        self.json.extend_from_slice(&other.json);
        self.items.extend(other.items.into_iter().map(|c| Child {
            start: c.start + offset,
            ..c
        }));
        self.count += other.count;
    }

    /// Takes out every child, each to be sent on its own.
    pub(crate) fn take_all(&mut self) -> Vec<Subtree> {
        let out = self
            .items
            .iter()
            .map(|c| self.subtree(c, Kind::Subsegment))
            .collect();
        self.recycle();
        out
    }

    /// Takes out the child `id`, to be sent on its own.
    pub(crate) fn take(&mut self, id: SegmentId) -> Option<Subtree> {
        let i = self.items.iter().position(|c| c.id == id)?;
        let child = self.items.remove(i);
        let subtree = self.subtree(&child, Kind::Subsegment);
        self.json.drain(child.start..child.start + child.len);
        for later in &mut self.items[i..] {
            later.start -= child.len;
        }
        self.count -= child.count;
        Some(subtree)
    }

    fn slice(&self, c: &Child) -> &[u8] {
        self.json.get(c.start..c.start + c.len).unwrap_or_default()
    }

    fn subtree(&self, c: &Child, kind: Kind) -> Subtree {
        Subtree {
            trace_id: c.trace_id,
            parent_id: c.parent_id,
            kind,
            json: self.slice(c).to_vec(),
        }
    }

    /// Splits the children into those nested (in their order) and those sent on their
    /// own (largest first): too deep, or too large to fit in `room` bytes with the rest.
    /// `None` when all of them are nested, the usual case, which then copies no list.
    fn fit(&self, room: usize) -> Option<(Vec<Child>, Vec<Child>)> {
        let all_fit = self.items.iter().all(|c| c.depth < MAX_NESTING)
            && self.items.iter().map(|c| c.len + 1).sum::<usize>() <= room;
        if all_fit {
            return None;
        }
        let (mut nested, mut overflow): (Vec<Child>, Vec<Child>) =
            self.items.iter().partition(|c| c.depth < MAX_NESTING);
        let mut size: usize = nested.iter().map(|c| c.len + 1).sum();
        if size > room {
            let mut by_size: Vec<usize> = (0..nested.len()).collect();
            by_size.sort_unstable_by_key(|&i| Reverse(nested[i].len));
            let mut out = vec![false; nested.len()];
            for i in by_size {
                if size <= room {
                    break;
                }
                size -= nested[i].len + 1;
                out[i] = true;
            }
            let mut keep = Vec::with_capacity(nested.len());
            for (child, out) in nested.into_iter().zip(out) {
                if out {
                    overflow.push(child);
                } else {
                    keep.push(child);
                }
            }
            nested = keep;
        }
        overflow.sort_unstable_by_key(|c| Reverse(c.len));
        Some((nested, overflow))
    }
}

/// A segment or subsegment with the subsegments nested in it, encoded, to be sent as a
/// document of its own.
#[derive(Clone, Debug)]
pub(crate) struct Subtree {
    trace_id: TraceId,
    parent_id: Option<SegmentId>,
    kind: Kind,
    /// The nested form: no `trace_id`, `parent_id` or `type`.
    json: Vec<u8>,
}

impl Subtree {
    /// Encodes `record` to be sent on its own, with as many of `children` nested as fit
    /// in `limit` bytes (see [`Children::add`]); gives back the children that did not.
    pub(crate) fn encode(
        mut record: Record,
        mut children: Children,
        limit: usize,
    ) -> (Subtree, Vec<Subtree>, Option<Shrunk>) {
        let kind = record.kind;
        let mut one = Children::default();
        let (child, overflow, shrunk) = one.push(&mut record, &children, limit);
        children.recycle();
        spare::give(one.items);
        // The one child is the whole buffer: it becomes the subtree's, uncopied.
        let subtree = Subtree {
            trace_id: child.trace_id,
            parent_id: child.parent_id,
            kind,
            json: one.json,
        };
        (subtree, overflow, shrunk)
    }

    /// Lets go of it once sent, keeping its buffer for the next children on this
    /// thread.
    pub(crate) fn recycle(self) {
        spare::give(self.json);
    }

    /// Writes it as a document of its own: the nested form with `trace_id` (and, for a
    /// subsegment, `parent_id` and `type`) in front.
    pub(crate) fn write_document(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"trace_id\":\"");
        out.extend_from_slice(&self.trace_id.to_bytes());
        out.push(b'"');
        if let Some(parent) = self.parent_id {
            out.extend_from_slice(b",\"parent_id\":\"");
            out.extend_from_slice(&parent.to_hex());
            out.push(b'"');
        }
        if self.kind == Kind::Subsegment {
            out.extend_from_slice(b",\"type\":\"subsegment\"");
        }
        out.push(b',');
        out.extend_from_slice(self.json.get(1..).unwrap_or_default());
    }
}

/// A document that was cut to fit in one datagram: reported by the caller once it
/// holds no lock (a subscriber may call back into tracing).
#[derive(Debug)]
#[must_use]
pub(crate) struct Shrunk {
    name: String,
    bytes: usize,
    cuts: Vec<Shrink>,
}

impl Shrunk {
    /// Logs the one warning for it.
    pub(crate) fn report(self) {
        tracing::warn!(
            name = %self.name,
            bytes = self.bytes,
            cut = ?self.cuts,
            "X-Ray document exceeds one datagram; shrunk to fit"
        );
    }
}

/// Reports what was shrunk, if anything.
pub(crate) fn report(shrunk: Option<Shrunk>) {
    if let Some(s) = shrunk {
        s.report();
    }
}

thread_local! {
    static CHILD_LISTS: spare::Pool<Child> = const { std::cell::RefCell::new(Vec::new()) };
}

impl spare::Kept for Child {
    fn pool() -> &'static std::thread::LocalKey<spare::Pool<Self>> {
        &CHILD_LISTS
    }
}

/// Writes the record's own fields at `start` in `out` (an object left open for
/// `subsegments`), applying [`Shrink`] steps, each as often as it helps, until they fit
/// in `limit` bytes.
fn write_fitting(
    record: &mut Record,
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> Option<Shrunk> {
    let mut steps = Shrink::ALL.iter().peekable();
    let mut shrunk: Option<Shrunk> = None;
    loop {
        out.truncate(start);
        write_fields(record, out);
        // The closing brace is one more byte.
        let size = out.len() - start;
        if size < limit {
            return shrunk;
        }
        let step = loop {
            match steps.peek() {
                Some(step) if record.shrink(**step) => break **step,
                Some(_) => {
                    steps.next();
                }
                // Only names, ids, times and flags are left: they always fit.
                None => return shrunk,
            }
        };
        let cuts = &mut shrunk
            .get_or_insert_with(|| Shrunk {
                name: record.name.to_string(),
                bytes: size,
                cuts: Vec::new(),
            })
            .cuts;
        if cuts.last() != Some(&step) {
            cuts.push(step);
        }
    }
}

fn write_fields(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"name\":");
    write_str(out, &r.name);
    out.extend_from_slice(b",\"id\":\"");
    out.extend_from_slice(&r.id.to_hex());
    out.extend_from_slice(b"\",\"start_time\":");
    write_time(out, r.start_time);
    match r.end_time {
        Some(end) => {
            out.extend_from_slice(b",\"end_time\":");
            write_time(out, end);
        }
        None => out.extend_from_slice(b",\"in_progress\":true"),
    }
    if let Some(ns) = r.namespace {
        out.extend_from_slice(b",\"namespace\":");
        write_str(out, ns);
    }
    for (set, flag) in [
        (r.error, &b",\"error\":true"[..]),
        (r.throttle, b",\"throttle\":true"),
        (r.fault, b",\"fault\":true"),
    ] {
        if set {
            out.extend_from_slice(flag);
        }
    }
    if let Some(cause) = &r.cause {
        write_field(out, "cause", cause);
    }
    if !r.annotations.is_empty() {
        out.extend_from_slice(b",\"annotations\":{");
        for (i, (key, value)) in r.annotations.0.iter().enumerate() {
            write_key(out, i, key);
            write_scalar(out, value);
        }
        out.push(b'}');
    }
    if !r.metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":{");
        for (i, (namespace, entries)) in r.metadata.namespaces().enumerate() {
            write_key(out, i, namespace);
            out.push(b'{');
            for (j, (key, value)) in entries.enumerate() {
                write_key(out, j, key);
                match value {
                    MetadataValue::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
                    MetadataValue::Scalar(v) => write_scalar(out, v),
                }
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
    if let Some(http) = &r.http {
        write_http(out, http);
    }
    if let Some(aws) = &r.aws {
        write_aws(out, aws);
    } else if let Some(origin) = &r.origin {
        if let Some(aws) = &origin.aws {
            out.extend_from_slice(b",\"aws\":");
            out.extend_from_slice(aws.get().as_bytes());
        }
    }
    if let Some(name) = r.origin.as_ref().and_then(|o| o.origin) {
        out.extend_from_slice(b",\"origin\":");
        write_str(out, name);
    }
    if let Some(sql) = &r.sql {
        write_field(out, "sql", sql);
    }
}

/// `,"name":<value>`; a value that cannot be encoded is left out, with a warning.
fn write_field<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
    let start = out.len();
    out.push(b',');
    write_str(out, name);
    out.push(b':');
    if let Err(e) = serde_json::to_writer(&mut *out, value) {
        out.truncate(start);
        tracing::warn!(field = name, error = %e, "X-Ray document field could not be encoded; left out");
    }
}

/// `,"http":{…}`.
fn write_http(out: &mut Vec<u8>, http: &Http) {
    out.extend_from_slice(b",\"http\":{");
    let mut i = 0;
    if let Some(request) = &http.request {
        write_key(out, i, "request");
        out.push(b'{');
        write_key(out, 0, "method");
        write_str(out, cut(&request.method));
        write_key(out, 1, "url");
        write_str(out, cut(&request.url));
        if let Some(agent) = &request.user_agent {
            write_key(out, 2, "user_agent");
            write_str(out, cut(agent));
        }
        if let Some(ip) = &request.client_ip {
            write_key(out, 2, "client_ip");
            write_str(out, cut(ip));
            if request.x_forwarded_for {
                out.extend_from_slice(b",\"x_forwarded_for\":true");
            }
        }
        out.push(b'}');
        i += 1;
    }
    if let Some(response) = &http.response {
        write_key(out, i, "response");
        out.push(b'{');
        write_key(out, 0, "status");
        write_u64(out, u64::from(response.status));
        if let Some(length) = response.content_length {
            write_key(out, 1, "content_length");
            write_u64(out, length);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// `,"aws":{…}` of an AWS SDK call, the recorded request parameters among its fields.
fn write_aws(out: &mut Vec<u8>, aws: &Aws) {
    out.extend_from_slice(b",\"aws\":{\"operation\":");
    write_str(out, &aws.operation);
    for (key, value) in [
        (&b",\"region\":"[..], &aws.region),
        (b",\"request_id\":", &aws.request_id),
        (b",\"id_2\":", &aws.id_2),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            write_str(out, value);
        }
    }
    out.extend_from_slice(b",\"retries\":");
    write_u64(out, u64::from(aws.retries));
    for (key, value) in &aws.parameters {
        out.push(b',');
        write_str(out, key);
        out.push(b':');
        match value {
            serde_json::Value::String(s) => write_str(out, s),
            other => write_json(out, other),
        }
    }
    out.push(b'}');
}

/// At most [`MAX_HTTP_FIELD`] characters of `s`, cut on a character boundary.
fn cut(s: &str) -> &str {
    match s.char_indices().nth(MAX_HTTP_FIELD) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// `"key":` of the `i`th entry of an object.
fn write_key(out: &mut Vec<u8>, i: usize, key: &str) {
    if i > 0 {
        out.push(b',');
    }
    write_str(out, key);
    out.push(b':');
}

/// An annotation or scalar metadata value. Floats are finite here: non-finite ones are
/// refused as annotations and kept as text in metadata.
fn write_scalar(out: &mut Vec<u8>, value: &AnnotationValue) {
    match value {
        AnnotationValue::String(s) => write_str(out, s),
        AnnotationValue::Int(v) => {
            if *v < 0 {
                out.push(b'-');
            }
            write_u64(out, v.unsigned_abs());
        }
        AnnotationValue::UInt(v) => write_u64(out, *v),
        AnnotationValue::Float(v) => write_json(out, v),
        AnnotationValue::Bool(true) => out.extend_from_slice(b"true"),
        AnnotationValue::Bool(false) => out.extend_from_slice(b"false"),
    }
}

/// A string with no character JSON escapes (no quote, backslash or control character,
/// as any sanitized name) is copied as it is. Anything else is escaped.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_json(out, s);
    }
}

/// The bytes JSON escapes in a string: control characters, quote and backslash.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// Strings and the plain values written here cannot fail to encode into a `Vec`.
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Seconds since the epoch with six decimals: `1795460769.158351`.
fn write_time(out: &mut Vec<u8>, t: Timestamp) {
    let (secs, micros) = t.parts();
    let m = micros as usize;
    if (1_000_000_000..10_000_000_000).contains(&secs) {
        // Ten digits until the year 2286: written in one go.
        let mut text = [b'.'; 17];
        text[..10].copy_from_slice(&seconds_text(secs));
        text[11..13].copy_from_slice(pair(m / 10_000));
        text[13..15].copy_from_slice(pair(m / 100));
        text[15..17].copy_from_slice(pair(m));
        out.extend_from_slice(&text);
        return;
    }
    write_u64(out, secs);
    let mut frac = [b'.', 0, 0, 0, 0, 0, 0];
    frac[1..3].copy_from_slice(pair(m / 10_000));
    frac[3..5].copy_from_slice(pair(m / 100));
    frac[5..7].copy_from_slice(pair(m));
    out.extend_from_slice(&frac);
}

/// The ten digits of `secs` (from 10^9 to 10^10 - 1). The last second written on the
/// thread is kept: the times of one invocation's documents mostly share it.
fn seconds_text(secs: u64) -> [u8; 10] {
    thread_local! {
        static LAST: Cell<(u64, [u8; 10])> = const { Cell::new((0, [0; 10])) };
    }
    if let Ok((last, text)) = LAST.try_with(Cell::get) {
        if last == secs {
            return text;
        }
    }
    let s = secs as usize;
    let mut text = [0; 10];
    for (i, part) in [s / 100_000_000, s / 1_000_000, s / 10_000, s / 100, s]
        .into_iter()
        .enumerate()
    {
        text[2 * i..2 * i + 2].copy_from_slice(pair(part));
    }
    let _ = LAST.try_with(|last| last.set((secs, text)));
    text
}

/// `"00"` to `"99"`.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn pair(n: usize) -> &'static [u8] {
    let i = (n % 100) * 2;
    &PAIRS[i..i + 2]
}

fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(pair((v % 100) as usize));
        v /= 100;
    }
    if v >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(pair(v as usize));
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::super::test_records::{exception, record};
    use super::super::{
        AnnotationValue, Aws, Http, HttpRequest, HttpResponse, Origin, Platform, Record, Sql,
        StackFrame,
    };
    use super::*;
    use serde_json::{json, Value};

    const LIMIT: usize = crate::emitter::MAX_SUBTREE;

    /// The subtree as a document of its own, checked against the schema.
    fn document(s: &Subtree) -> Value {
        let mut out = Vec::new();
        s.write_document(&mut out);
        assert!(out.len() <= LIMIT + MAX_DOCUMENT_PREFIX);
        let doc = serde_json::from_slice(&out).unwrap();
        crate::context::test_support::assert_valid(&doc);
        doc
    }

    fn encode(r: Record, children: Children) -> Subtree {
        let (s, overflow, _) = Subtree::encode(r, children, LIMIT);
        assert!(overflow.is_empty());
        s
    }

    /// A record named `name` under `parent`, padded with `bytes` of metadata.
    fn named(name: &'static str, parent: &Record, bytes: usize) -> Record {
        let mut r = record();
        r.name = name.into();
        r.id = SegmentId::random();
        r.parent_id = Some(parent.id);
        if bytes > 0 {
            r.metadata.insert(
                "default",
                "pad",
                serde_json::value::to_raw_value(&"p".repeat(bytes)).unwrap(),
            );
        }
        r
    }

    fn names(docs: &[Value]) -> Vec<&str> {
        docs.iter().map(|d| d["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_subsegment_on_its_own() {
        let s = encode(record(), Children::default());
        let mut out = Vec::new();
        s.write_document(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"trace_id":"1-5759e988-bd862e3fe1be46a994272793","parent_id":"53995c3f42cd8ad8","type":"subsegment","name":"n","id":"1111222233334444","start_time":1795460769.158351,"end_time":1795460769.158362}"#
        );
    }

    #[test]
    fn annotations_and_metadata_are_written_as_json_reads_them() {
        let mut r = record();
        let values = [
            AnnotationValue::from("plain"),
            AnnotationValue::from("quote \" back \\ tab \t é"),
            AnnotationValue::from(i64::MIN),
            AnnotationValue::from(-7),
            AnnotationValue::from(u64::MAX),
            AnnotationValue::from(0.25),
            AnnotationValue::from(true),
            AnnotationValue::from(false),
        ];
        for (i, v) in values.iter().enumerate() {
            r.annotations.insert(format!("a{i}").as_str(), v.clone());
            r.metadata.insert("ns", format!("k{i}").as_str(), v.clone());
        }
        r.metadata
            .insert("other", "key \"q\"", AnnotationValue::from(f64::NAN));
        let raw = serde_json::value::to_raw_value(&json!({"x": [1, "y"]})).unwrap();
        r.metadata.insert("ns", "json", raw);
        let doc = document(&encode(r, Children::default()));
        let expected: Vec<Value> = values
            .iter()
            .map(|v| serde_json::to_value(v).unwrap())
            .collect();
        for (i, v) in expected.iter().enumerate() {
            assert_eq!(&doc["annotations"][format!("a{i}")], v);
            assert_eq!(&doc["metadata"]["ns"][format!("k{i}")], v);
        }
        assert_eq!(doc["metadata"]["ns"]["json"], json!({"x": [1, "y"]}));
        assert_eq!(doc["metadata"]["other"]["key \"q\""], "NaN");
    }

    #[test]
    fn a_segment_has_no_type_or_parent() {
        let mut r = record();
        r.kind = Kind::Segment;
        r.parent_id = None;
        let doc = document(&encode(r, Children::default()));
        assert!(doc.get("type").is_none() && doc.get("parent_id").is_none());
        assert_eq!(doc["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
    }

    #[test]
    fn every_buffer_of_an_encoded_subtree_goes_back_to_the_pool() {
        let empty_pools = || {
            spare::drain::<u8>();
            spare::drain::<Child>();
        };
        empty_pools();
        let parent = record();
        let mut under_a = Children::default();
        under_a.add(&mut named("b", &parent, 0), &Children::default(), LIMIT);
        let mut children = Children::default();
        children.add(&mut named("a", &parent, 0), &under_a, LIMIT);
        under_a.recycle();
        let (subtree, _, _) = Subtree::encode(parent, children, LIMIT);
        subtree.recycle();
        // The encoding took `under_a`'s text and list, let go just before; with those of
        // `children`, all four buffers are back.
        assert_eq!((spare::kept::<u8>(), spare::kept::<Child>()), (2, 2));
        empty_pools();
    }

    #[test]
    fn times_are_written_exactly_as_the_second_changes_and_back() {
        for micros in [
            1_795_460_769_000_007u64,
            1_795_460_769_999_999,
            1_795_460_770_000_000,
            1_795_460_769_500_000,
            1_000_000_000_000_000,
            9_999_999_999_999_999,
            999_999_999_999_999,
            12_345,
        ] {
            let mut out = Vec::new();
            write_time(&mut out, Timestamp(micros));
            let expected = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn every_field_and_times_with_leading_zeros() {
        let mut r = record();
        r.start_time = Timestamp(1_795_460_769_000_007);
        r.end_time = None;
        r.namespace = Some("aws");
        (r.error, r.throttle, r.fault) = (true, true, true);
        r.annotations.insert("k", "v \"quoted\"".into());
        r.add_exceptions(vec![exception("E".into(), "m".into())]);
        r.http = Some(Box::new(Http {
            request: Some(HttpRequest {
                method: "GET".into(),
                url: "http://h/\"q\"".into(),
                ..HttpRequest::default()
            }),
            response: Some(HttpResponse {
                status: 429,
                content_length: Some(3),
            }),
        }));
        r.aws = Some(Box::new(Aws {
            operation: "PutItem".into(),
            ..Aws::default()
        }));
        let doc = document(&encode(r, Children::default()));
        assert_eq!(doc["start_time"].to_string(), "1795460769.000007");
        assert_eq!(doc["in_progress"], true);
        assert_eq!(doc["namespace"], "aws");
        assert_eq!(
            (&doc["error"], &doc["throttle"], &doc["fault"]),
            (&json!(true), &json!(true), &json!(true))
        );
        assert_eq!(doc["annotations"]["k"], "v \"quoted\"");
        assert_eq!(doc["cause"]["exceptions"][0]["type"], "E");
        assert_eq!(doc["http"]["response"]["status"], 429);
        assert_eq!(doc["http"]["response"]["content_length"], 3);
        assert_eq!(
            doc["http"]["request"],
            json!({"method": "GET", "url": "http://h/\"q\""})
        );
        assert_eq!(doc["aws"]["operation"], "PutItem");
    }

    #[test]
    fn incoming_request_fields_origin_and_long_strings_cut_to_the_schema() {
        let mut r = record();
        r.kind = Kind::Segment;
        r.parent_id = None;
        let long = "é".repeat(300);
        r.http = Some(Box::new(Http {
            request: Some(HttpRequest {
                method: "POST".into(),
                url: format!("http://h/{long}"),
                user_agent: Some(long.clone()),
                client_ip: Some("203.0.113.7".into()),
                x_forwarded_for: true,
            }),
            response: None,
        }));
        r.origin = Some(std::sync::Arc::new(Origin::new(&Platform::Ecs {
            container: Some("web".into()),
            container_id: Some("abc".into()),
            container_arn: None,
        })));
        let doc = document(&encode(r, Children::default()));
        let request = &doc["http"]["request"];
        assert_eq!(request["url"].as_str().unwrap().chars().count(), 250);
        assert_eq!(request["user_agent"].as_str().unwrap(), &long[..500]);
        assert_eq!(request["client_ip"], "203.0.113.7");
        assert_eq!(request["x_forwarded_for"], true);
        assert_eq!(doc["origin"], "AWS::ECS::Container");
        assert_eq!(
            doc["aws"]["ecs"],
            json!({"container": "web", "container_id": "abc"})
        );
        assert_eq!(doc["aws"]["xray"]["sdk_version"], env!("CARGO_PKG_VERSION"));
        assert!(doc.get("type").is_none());
    }

    #[test]
    fn children_are_nested_without_the_fields_a_document_needs_alone() {
        let parent = record();
        let mut b = named("b", &parent, 0);
        let mut under_b = Children::default();
        under_b.add(&mut named("c", &b, 0), &Children::default(), LIMIT);
        let mut children = Children::default();
        children.add(&mut named("a", &parent, 0), &Children::default(), LIMIT);
        children.add(&mut b, &under_b, LIMIT);
        assert_eq!(children.count(), 3);
        let doc = document(&encode(parent, children));
        let nested = doc["subsegments"].as_array().unwrap();
        assert_eq!(names(nested), ["a", "b"]);
        for c in nested {
            assert!(
                c.get("trace_id").is_none()
                    && c.get("parent_id").is_none()
                    && c.get("type").is_none()
            );
        }
        assert_eq!(nested[1]["subsegments"][0]["name"], "c");
        assert_eq!(xray_local::document::count(&doc), 4);
    }

    #[test]
    fn the_largest_children_are_left_out_to_be_sent_alone() {
        let parent = record();
        let mut children = Children::default();
        for (name, bytes) in [
            ("small", 10),
            ("large", 40_000),
            ("medium", 30_000),
            ("larger", 50_000),
        ] {
            children.add(
                &mut named(name, &parent, bytes),
                &Children::default(),
                LIMIT,
            );
        }
        let (s, overflow, _) = Subtree::encode(parent, children, LIMIT);
        let alone: Vec<Value> = overflow.iter().map(document).collect();
        assert_eq!(
            names(&alone),
            ["larger", "large"],
            "largest first, only as many as needed"
        );
        for o in &alone {
            assert_eq!(o["parent_id"], "1111222233334444");
        }
        let doc = document(&s);
        assert_eq!(
            names(doc["subsegments"].as_array().unwrap()),
            ["small", "medium"],
            "the rest, in their order"
        );
    }

    #[test]
    fn a_child_can_be_taken_out_and_the_rest_still_nest() {
        let parent = record();
        let mut children = Children::default();
        let ids: Vec<SegmentId> = ["a", "b", "c"]
            .into_iter()
            .map(|n| {
                let mut r = named(n, &parent, 0);
                let id = r.id;
                children.add(&mut r, &Children::default(), LIMIT);
                id
            })
            .collect();
        let b = children.take(ids[1]).unwrap();
        assert!(children.take(ids[1]).is_none());
        assert_eq!(document(&b)["name"], "b");
        assert_eq!(children.count(), 2);
        let doc = document(&encode(parent, children));
        assert_eq!(names(doc["subsegments"].as_array().unwrap()), ["a", "c"]);
    }

    #[test]
    fn subtrees_nested_too_deeply_are_sent_alone() {
        fn depth(doc: &Value) -> u32 {
            doc["subsegments"]
                .as_array()
                .map_or(0, |c| 1 + c.iter().map(depth).max().unwrap_or(0))
        }
        let mut children = Children::default();
        let mut sent_alone = Vec::new();
        for level in 1..=(MAX_NESTING + 5) {
            let mut next = Children::default();
            let (overflow, _) = next.add(&mut record(), &children, LIMIT);
            if let Some(o) = overflow.first() {
                sent_alone.push((level, depth(&document(o))));
            }
            children = next;
        }
        // Cut once: a subtree already MAX_NESTING deep is not nested again.
        assert_eq!(sent_alone, [(MAX_NESTING + 2, MAX_NESTING)]);
        let doc = document(&encode(record(), children));
        assert_eq!(depth(&doc), 4);
    }

    #[test]
    fn oversized_metadata_is_dropped_and_marked() {
        let mut r = record();
        r.metadata.insert(
            "default",
            "response",
            serde_json::value::to_raw_value(&"x".repeat(100_000)).unwrap(),
        );
        r.annotations.insert("kept", true.into());
        let doc = document(&encode(r, Children::default()));
        assert_eq!(
            doc["metadata"],
            json!({"xray_lambda": {"truncated": ["metadata"]}})
        );
        assert_eq!(doc["annotations"]["kept"], true);
    }

    #[test]
    fn oversized_exceptions_lose_stacks_then_text() {
        let mut r = record();
        let mut e = exception("E".into(), "m".repeat(80_000));
        e.stack = (0..2000)
            .map(|i| StackFrame {
                path: format!("src/module_{i}.rs"),
                line: i,
                label: "f".into(),
            })
            .collect();
        r.add_exceptions(vec![e]);
        let doc = document(&encode(r, Children::default()));
        assert_eq!(
            doc["metadata"]["xray_lambda"]["truncated"],
            json!(["stacks", "messages"])
        );
        assert_eq!(doc["cause"]["exceptions"][0]["truncated"], 2000);
    }

    #[test]
    fn a_large_aws_parameter_is_dropped_not_the_document() {
        let mut r = record();
        let mut parameters = serde_json::Map::new();
        parameters.insert("table_name".into(), "users".into());
        parameters.insert("item".into(), "x".repeat(100_000).into());
        r.aws = Some(Box::new(Aws {
            operation: "PutItem".into(),
            parameters,
            ..Aws::default()
        }));
        let doc = document(&encode(r, Children::default()));
        assert_eq!(doc["aws"]["operation"], "PutItem");
        assert!(doc["aws"].get("item").is_none());
        assert_eq!(
            doc["aws"]["table_name"], "users",
            "only the large one is cut"
        );
        assert_eq!(
            doc["metadata"]["xray_lambda"]["truncated"],
            json!(["aws_parameters"])
        );
    }

    #[test]
    fn a_long_exception_type_is_cut_not_the_document() {
        let mut r = record();
        r.add_exceptions(vec![exception("T".repeat(100_000), "m".into())]);
        let doc = document(&encode(r, Children::default()));
        assert_eq!(
            doc["cause"]["exceptions"][0]["type"]
                .as_str()
                .unwrap()
                .len(),
            1024
        );
    }

    /// Every field that can grow at once, each past a datagram on its own: the document
    /// still goes out, with its identity and timing.
    #[test]
    fn a_document_huge_in_every_field_still_fits() {
        let mut r = record();
        let huge = || "h".repeat(70_000);
        r.metadata.insert(
            "default",
            "k",
            serde_json::value::to_raw_value(&huge()).unwrap(),
        );
        for i in 0..2_000 {
            r.annotations
                .insert(format!("key_{i}").as_str(), "v".repeat(1000).into());
        }
        let mut e = exception(huge(), huge());
        e.stack.clear();
        r.add_exceptions(vec![e; 100]);
        r.aws = Some(Box::new(Aws {
            operation: huge(),
            request_id: Some(huge()),
            ..Aws::default()
        }));
        r.sql = Some(Box::new(Sql {
            sanitized_query: huge(),
            database_type: Some(huge()),
        }));
        r.fault = true;
        let doc = document(&encode(r, Children::default()));
        assert_eq!((&doc["name"], &doc["fault"]), (&json!("n"), &json!(true)));
        assert_eq!(
            doc["metadata"]["xray_lambda"]["truncated"],
            json!([
                "metadata",
                "sql_query",
                "messages",
                "annotations",
                "exceptions",
                "cause_aws_http_sql"
            ])
        );
    }
}
