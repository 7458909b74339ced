//! The `X-Amzn-Trace-Id` header: `Root=…;Parent=…;Sampled=…` plus fields to pass on.

use std::fmt;

use crate::id::{SegmentId, TraceId};

/// The sampling decision carried by a trace header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// `Sampled=1`: record and send.
    Sampled,
    /// `Sampled=0`: record nothing, but keep propagating the header.
    NotSampled,
    /// `Sampled=?` or absent: the decision is deferred. Inside Lambda this means not
    /// sampled (Lambda always decides before the function runs).
    Requested,
}

impl Sampling {
    fn as_str(self) -> &'static str {
        match self {
            Sampling::Sampled => "1",
            Sampling::NotSampled => "0",
            Sampling::Requested => "?",
        }
    }
}

/// A parsed trace header.
///
/// Unknown fields (Lambda's `Lineage`, anything a future service adds) are kept verbatim
/// and in order so they can be passed on unchanged; `Self=` is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    root: TraceId,
    parent: Option<SegmentId>,
    sampling: Sampling,
    /// Extra `key=value` fields joined with `;`, without spaces.
    extra: String,
}

/// Why a trace header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// There is no `Root=` field.
    MissingRoot,
    /// `Root=` is not a valid trace id.
    InvalidRoot(String),
    /// `Parent=` is not 16 hex digits (or is all zeros).
    InvalidParent(String),
    /// `Root` or `Parent` appears twice.
    Duplicate(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::MissingRoot => f.write_str("trace header has no Root"),
            HeaderError::InvalidRoot(v) => write!(f, "trace header Root {v:?} is not a trace id"),
            HeaderError::InvalidParent(v) => {
                write!(f, "trace header Parent {v:?} is not a 16-hex-digit id")
            }
            HeaderError::Duplicate(k) => write!(f, "trace header has {k} twice"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// The header's name, parsed once: a lookup or insert by a string name parses it (and
/// the AWS SDK copies one with capitals first) every time.
#[cfg(any(
    feature = "aws-sdk",
    feature = "__http-client",
    feature = "http-server"
))]
pub(crate) const TRACE_HEADER: http::HeaderName = http::HeaderName::from_static("x-amzn-trace-id");

const ROOT: &str = "Root";
const PARENT: &str = "Parent";
const SAMPLED: &str = "Sampled";
const SELF: &str = "Self";
const LINEAGE: &str = "Lineage";
/// How many bytes of `key=value` fields other than `Root`, `Parent`, `Sampled`, `Self`
/// and `Lineage` are kept for propagation (as the Node SDK does).
const MAX_UNKNOWN_FIELD_BYTES: usize = 256;

/// The `key=value` fields of a header, each side trimmed. A piece without `=` is
/// skipped: empty ones come from a trailing or doubled `;`, and a bare word carries
/// nothing that could be passed on faithfully. Cut at byte positions (`;` and `=` are
/// ASCII, so every cut is on a character boundary): in a header this short, a plain
/// loop finds them sooner than a search gets going, and every invocation and incoming
/// request parses one.
fn fields(s: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = Some(s);
    std::iter::from_fn(move || loop {
        let text = rest?;
        let (part, after) = match text.bytes().position(|b| b == b';') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        rest = after;
        if let Some(eq) = part.bytes().position(|b| b == b'=') {
            return Some((part[..eq].trim(), part[eq + 1..].trim()));
        }
    })
}

impl TraceHeader {
    /// A header for `root`, optionally under `parent`.
    pub fn new(root: TraceId, parent: Option<SegmentId>, sampling: Sampling) -> Self {
        TraceHeader {
            root,
            parent,
            sampling,
            extra: String::new(),
        }
    }

    /// Parses a header, tolerating spaces around `;` and `=`, a trailing `;`, and any
    /// letter case in the `Root`, `Parent`, `Sampled` and `Self` keys (a proxy that
    /// lower-cases headers must not switch tracing off).
    ///
    /// Other fields are kept to be passed on: `Lineage` always, the rest up to
    /// 256 bytes in all (first come, first kept), so that a hostile header cannot
    /// inflate every downstream request.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let mut root = None;
        let mut parent = None;
        let mut sampling = Sampling::Requested;
        let mut extra = String::new();
        let mut unknown_bytes = 0;
        for (key, value) in fields(s) {
            if key.eq_ignore_ascii_case(ROOT) {
                if root.is_some() {
                    return Err(HeaderError::Duplicate(ROOT));
                }
                root = Some(
                    TraceId::parse(value)
                        .ok_or_else(|| HeaderError::InvalidRoot(value.to_owned()))?,
                );
            } else if key.eq_ignore_ascii_case(PARENT) {
                if parent.is_some() {
                    return Err(HeaderError::Duplicate(PARENT));
                }
                parent = Some(
                    SegmentId::parse(value)
                        .ok_or_else(|| HeaderError::InvalidParent(value.to_owned()))?,
                );
            } else if key.eq_ignore_ascii_case(SAMPLED) {
                sampling = match value {
                    "1" => Sampling::Sampled,
                    "0" => Sampling::NotSampled,
                    _ => Sampling::Requested,
                }
            } else if key.is_empty() || key.eq_ignore_ascii_case(SELF) {
            } else {
                let lineage = key.eq_ignore_ascii_case(LINEAGE);
                let size = key.len() + 1 + value.len();
                if !lineage {
                    if unknown_bytes + size > MAX_UNKNOWN_FIELD_BYTES {
                        continue;
                    }
                    unknown_bytes += size;
                }
                if !extra.is_empty() {
                    extra.push(';');
                }
                extra.push_str(key);
                extra.push('=');
                extra.push_str(value);
            }
        }
        Ok(TraceHeader {
            root: root.ok_or(HeaderError::MissingRoot)?,
            parent,
            sampling,
            extra,
        })
    }

    /// The trace id (`Root`).
    pub fn root(&self) -> TraceId {
        self.root
    }

    /// The parent id (`Parent`): in Lambda, the function segment's id.
    pub fn parent(&self) -> Option<SegmentId> {
        self.parent
    }

    /// The sampling decision.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Whether the header says to record (`Sampled=1`).
    pub fn is_sampled(&self) -> bool {
        self.sampling == Sampling::Sampled
    }

    /// Lambda's recursion-detection `Lineage` value, if present.
    pub fn lineage(&self) -> Option<&str> {
        self.extra_fields()
            .find(|(k, _)| k.eq_ignore_ascii_case(LINEAGE))
            .map(|(_, v)| v)
    }

    /// The fields other than `Root`, `Parent`, `Sampled` and `Self`, in order.
    pub fn extra_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extra.split(';').filter_map(|kv| kv.split_once('='))
    }

    /// The same trace and extra fields under another parent and sampling decision: what
    /// an outgoing call carries.
    pub fn with_parent(&self, parent: SegmentId, sampling: Sampling) -> Self {
        TraceHeader {
            root: self.root,
            parent: Some(parent),
            sampling,
            extra: self.extra.clone(),
        }
    }

    pub(crate) fn extra(&self) -> &str {
        &self.extra
    }

    /// [`Self::with_parent`], reusing this header's fields rather than copying them.
    #[cfg(feature = "http-server")]
    pub(crate) fn passed_on(self, parent: SegmentId, sampling: Sampling) -> Self {
        TraceHeader {
            parent: Some(parent),
            sampling,
            ..self
        }
    }

    pub(crate) fn from_parts(
        root: TraceId,
        parent: Option<SegmentId>,
        sampling: Sampling,
        extra: &str,
    ) -> Self {
        TraceHeader {
            root,
            parent,
            sampling,
            extra: extra.to_owned(),
        }
    }
}

impl TraceHeader {
    /// The header as sent: `Root=…;Parent=…;Sampled=…[;extra]`, built in one buffer
    /// (it is made for every outgoing call) of exactly its length: such a `String`
    /// becomes an `http::HeaderValue` without another allocation.
    pub(crate) fn to_wire(&self) -> String {
        let parent = self.parent.map(SegmentId::to_hex);
        let sampled = self.sampling.as_str();
        let field = |key: &str, value_len: usize| key.len() + 1 + value_len;
        let len = field(ROOT, TraceId::LEN)
            + parent.map_or(0, |p| 1 + field(PARENT, p.len()))
            + 1
            + field(SAMPLED, sampled.len())
            + if self.extra.is_empty() {
                0
            } else {
                1 + self.extra.len()
            };
        let mut out = String::with_capacity(len);
        out.push_str(ROOT);
        out.push('=');
        self.root.with_str(|s| out.push_str(s));
        if let Some(p) = parent {
            out.push(';');
            out.push_str(PARENT);
            out.push('=');
            // Hex digits only.
            out.push_str(std::str::from_utf8(&p).unwrap_or_default());
        }
        out.push(';');
        out.push_str(SAMPLED);
        out.push('=');
        out.push_str(sampled);
        if !self.extra.is_empty() {
            out.push(';');
            out.push_str(&self.extra);
        }
        out
    }
}

impl fmt::Display for TraceHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl std::str::FromStr for TraceHeader {
    type Err = HeaderError;
    fn from_str(s: &str) -> Result<Self, HeaderError> {
        TraceHeader::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LAMBDA: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0";

    #[test]
    fn the_wire_form_fills_its_buffer_exactly() {
        for text in [
            LAMBDA,
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
        ] {
            let wire = TraceHeader::parse(text).unwrap().to_wire();
            assert_eq!(wire.capacity(), wire.len(), "{wire}");
        }
    }

    #[test]
    fn parses_lambda_header() {
        let h = TraceHeader::parse(LAMBDA).unwrap();
        assert_eq!(h.root().to_string(), "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(h.parent().unwrap().to_string(), "53995c3f42cd8ad8");
        assert!(h.is_sampled());
        assert_eq!(h.lineage(), Some("a87bd80c:0"));
        assert_eq!(h.to_string(), LAMBDA);
    }

    #[test]
    fn tolerates_spaces_and_trailing_semicolon() {
        let h = TraceHeader::parse(
            " Root = 1-5759e988-bd862e3fe1be46a994272793 ; Parent=53995c3f42cd8ad8 ;Sampled= 0 ; ",
        )
        .unwrap();
        assert_eq!(h.sampling(), Sampling::NotSampled);
        assert_eq!(
            h.to_string(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
        );
    }

    #[test]
    fn keeps_unknown_fields_in_order_and_drops_self() {
        let h = TraceHeader::parse(
            "Self=1-5759e988-bd862e3fe1be46a994272793;Root=1-5759e988-bd862e3fe1be46a994272793;Foo=bar;Sampled=?;Lineage=1:2",
        )
        .unwrap();
        assert_eq!(h.sampling(), Sampling::Requested);
        assert_eq!(h.parent(), None);
        let extra: Vec<_> = h.extra_fields().collect();
        assert_eq!(extra, vec![("Foo", "bar"), ("Lineage", "1:2")]);
        assert_eq!(
            h.to_string(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?;Foo=bar;Lineage=1:2"
        );
    }

    #[test]
    fn reserved_keys_in_any_case() {
        let h = TraceHeader::parse(
            "root=1-5759e988-bd862e3fe1be46a994272793;PARENT=53995c3f42cd8ad8;sampled=1;lineage=a87bd80c:0;self=x",
        )
        .unwrap();
        assert!(h.is_sampled());
        assert_eq!(h.parent().unwrap().to_string(), "53995c3f42cd8ad8");
        assert_eq!(h.lineage(), Some("a87bd80c:0"));
        assert_eq!(
            h.to_string(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;lineage=a87bd80c:0"
        );
        assert_eq!(
            TraceHeader::parse(
                "ROOT=1-5759e988-bd862e3fe1be46a994272793;root=1-5759e988-bd862e3fe1be46a994272793"
            ),
            Err(HeaderError::Duplicate("Root"))
        );
    }

    #[test]
    fn unknown_fields_are_bounded_and_lineage_is_always_kept() {
        let big = "v".repeat(200);
        let h = TraceHeader::parse(&format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;A={big};B={big};C=small;Lineage=a87bd80c:0;{}",
            (0..100).map(|i| format!("K{i}=x")).collect::<Vec<_>>().join(";")
        ))
        .unwrap();
        let kept: Vec<_> = h.extra_fields().collect();
        let unknown: usize = kept
            .iter()
            .filter(|(k, _)| *k != "Lineage")
            .map(|(k, v)| k.len() + 1 + v.len())
            .sum();
        assert!(unknown <= 256, "{unknown} bytes kept");
        assert_eq!(kept[0], ("A", big.as_str()), "first come, first kept");
        assert!(
            !kept.iter().any(|(k, _)| *k == "B"),
            "the field over the budget is dropped"
        );
        assert!(
            kept.contains(&("C", "small")),
            "smaller fields after it still fit"
        );
        assert_eq!(h.lineage(), Some("a87bd80c:0"));
        // A long Lineage is kept whole, beyond the budget.
        let lineage = format!("{}:1", "f".repeat(300));
        let h = TraceHeader::parse(&format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage={lineage}"
        ))
        .unwrap();
        assert_eq!(h.lineage(), Some(lineage.as_str()));
    }

    #[test]
    fn rejects_bad_root_and_parent() {
        assert!(matches!(
            TraceHeader::parse("Root=1-xyz;Parent=53995c3f42cd8ad8;Sampled=1"),
            Err(HeaderError::InvalidRoot(_))
        ));
        assert!(matches!(
            TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=zz;Sampled=1"),
            Err(HeaderError::InvalidParent(_))
        ));
        assert_eq!(TraceHeader::parse(""), Err(HeaderError::MissingRoot));
        assert_eq!(
            TraceHeader::parse(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Root=1-5759e988-bd862e3fe1be46a994272793"
            ),
            Err(HeaderError::Duplicate("Root"))
        );
    }

    #[test]
    fn with_parent_keeps_extra_fields() {
        let h = TraceHeader::parse(LAMBDA).unwrap();
        let p = SegmentId::parse("1111222233334444").unwrap();
        assert_eq!(
            h.with_parent(p, Sampling::NotSampled).to_string(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1111222233334444;Sampled=0;Lineage=a87bd80c:0"
        );
    }

    fn valid_header() -> impl Strategy<Value = String> {
        let root = ("[0-9a-f]{8}", "[0-9a-f]{24}").prop_map(|(e, r)| format!("Root=1-{e}-{r}"));
        let parent =
            proptest::option::of("[0-9a-f]{15}[1-9a-f]".prop_map(|p| format!(";Parent={p}")));
        let sampled =
            prop_oneof![Just("1"), Just("0"), Just("?")].prop_map(|s| format!(";Sampled={s}"));
        let extra = proptest::collection::vec(
            ("[A-Z][A-Za-z0-9]{0,8}", "[A-Za-z0-9:._-]{0,12}")
                .prop_filter("reserved key", |(k, _)| {
                    ![ROOT, PARENT, SAMPLED, SELF]
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(k))
                })
                .prop_map(|(k, v)| format!(";{k}={v}")),
            0..4,
        );
        (root, parent, sampled, extra)
            .prop_map(|(r, p, s, e)| format!("{r}{}{s}{}", p.unwrap_or_default(), e.concat()))
    }

    /// The fields as `str::split` and `split_once` cut them, which [`fields`] does by
    /// hand.
    fn fields_by_searching(s: &str) -> Vec<(&str, &str)> {
        s.split(';')
            .filter_map(|part| part.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect()
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in any::<String>()) {
            let _ = TraceHeader::parse(&s);
        }

        #[test]
        fn fields_are_cut_as_a_search_cuts_them(s in any::<String>()) {
            prop_assert_eq!(fields(&s).collect::<Vec<_>>(), fields_by_searching(&s));
        }

        #[test]
        fn header_like_fields_are_cut_as_a_search_cuts_them(
            s in "[A-Za-z0-9=; \u{a0}\u{2003}é?-]{0,80}"
        ) {
            prop_assert_eq!(fields(&s).collect::<Vec<_>>(), fields_by_searching(&s));
        }

        #[test]
        fn header_like_input_never_panics(s in "[A-Za-z0-9=; ?-]{0,120}") {
            if let Ok(h) = TraceHeader::parse(&s) {
                // Whatever was accepted formats to something that parses to the same.
                prop_assert_eq!(TraceHeader::parse(&h.to_string()).unwrap(), h);
            }
        }

        #[test]
        fn valid_headers_round_trip(s in valid_header()) {
            let h = TraceHeader::parse(&s).unwrap();
            prop_assert_eq!(h.to_string(), s);
        }

        #[test]
        fn spacing_and_trailing_semicolon_do_not_matter(s in valid_header(), trailing in any::<bool>()) {
            let spaced = s.replace(';', " ; ").replace('=', " = ") + if trailing { ";" } else { "" };
            prop_assert_eq!(TraceHeader::parse(&spaced).unwrap().to_string(), s);
        }
    }
}
