//! Making user-supplied names, keys and strings acceptable to X-Ray.

use std::borrow::Cow;

use crate::name_chars::NAME_CHAR_RANGES;

/// Longest segment or subsegment name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Longest annotation key, in characters.
pub(crate) const MAX_ANNOTATION_KEY_CHARS: usize = 500;
/// Longest annotation string value, in characters.
pub(crate) const MAX_ANNOTATION_VALUE_CHARS: usize = 1000;
/// What a name becomes when nothing of it is left.
const EMPTY_NAME: &str = "unnamed";
/// What replaces a character X-Ray does not accept in a name.
const REPLACEMENT: char = '_';

/// Whether X-Ray accepts `c` in a segment or subsegment name: Unicode letters, digits,
/// space separators and `_ . : / % & # = + - @`, exactly as the schema's pattern says
/// (its `\-` is an escaped dash: a backslash is not accepted).
pub(crate) fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return is_ascii_name_byte(c as u8);
    }
    let c = c as u32;
    NAME_CHAR_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// [`is_name_char`] for an ASCII byte.
fn is_ascii_name_byte(b: u8) -> bool {
    ASCII_NAME_BYTES[usize::from(b)]
}

/// The ASCII bytes X-Ray accepts in a name, by value: one load per byte of the usual
/// name.
static ASCII_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = matches!(b as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b' ' | b'_' | b'.' | b':' | b'/' | b'%' | b'&' | b'#' | b'=' | b'+' | b'-' | b'@');
        b += 1;
    }
    table
};

/// A valid name for `name`: characters X-Ray refuses become `_`, it is cut to 200
/// characters (on a character boundary), and an empty name becomes `unnamed`.
/// Keeps `name` as it is (borrowed or owned) when it is already valid.
pub(crate) fn sanitize_name(name: Cow<'static, str>) -> Cow<'static, str> {
    // The usual name: short and ASCII, checked byte by byte.
    if !name.is_empty() && name.len() <= MAX_NAME_CHARS && name.bytes().all(is_ascii_name_byte) {
        return name;
    }
    let mut count = 0;
    let clean = name.chars().all(|c| {
        count += 1;
        is_name_char(c)
    });
    if clean && count <= MAX_NAME_CHARS {
        return if name.is_empty() {
            Cow::Borrowed(EMPTY_NAME)
        } else {
            name
        };
    }
    Cow::Owned(
        name.chars()
            .take(MAX_NAME_CHARS)
            .map(|c| if is_name_char(c) { c } else { REPLACEMENT })
            .collect(),
    )
}

/// Whether `key` is a valid annotation key: `^[a-zA-Z0-9_]{1,500}$`.
pub(crate) fn is_valid_annotation_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_ANNOTATION_KEY_CHARS
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `s` cut to at most `max` characters, on a character boundary.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Metadata namespaces starting with this are reserved for AWS.
pub(crate) fn is_reserved_namespace(ns: &str) -> bool {
    ns.starts_with("AWS.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_names_are_borrowed() {
        for n in [
            "subsegment_1",
            "## my-function",
            "DynamoDB",
            "a.b:c/d%e&f#g=h+i-k@l",
            "日本語 名前",
            "ünïcödé",
        ] {
            assert!(
                matches!(sanitize_name(Cow::Borrowed(n)), Cow::Borrowed(b) if b == n),
                "{n}"
            );
        }
    }

    #[test]
    fn invalid_characters_are_replaced() {
        assert_eq!(sanitize_name("get(user)!".into()), "get_user__");
        assert_eq!(sanitize_name("C:\\path".into()), "C:_path");
        assert_eq!(sanitize_name("tab\tnew\nline".into()), "tab_new_line");
        assert_eq!(sanitize_name("emoji 🚀".into()), "emoji _");
    }

    #[test]
    fn names_are_never_empty_and_cut_on_char_boundaries() {
        assert_eq!(sanitize_name("".into()), "unnamed");
        let long = "é".repeat(300);
        let s = sanitize_name(long.into());
        assert_eq!(s.chars().count(), 200);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn annotation_keys() {
        assert!(is_valid_annotation_key("ColdStart"));
        assert!(is_valid_annotation_key("user_id_2"));
        assert!(!is_valid_annotation_key(""));
        assert!(!is_valid_annotation_key("user-id"));
        assert!(!is_valid_annotation_key("naïve"));
        assert!(!is_valid_annotation_key(&"a".repeat(501)));
        assert!(is_valid_annotation_key(&"a".repeat(500)));
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
    }

    /// The hand-written ASCII fast path and the generated table agree with the schema's
    /// own `name` pattern for every character of the Basic Multilingual Plane (where all
    /// of the pattern's ranges lie) and a sample above it.
    #[test]
    fn table_matches_schema_pattern() {
        let schema: serde_json::Value = serde_json::from_str(xray_local::validate::SCHEMA).unwrap();
        let pattern = schema["properties"]["name"]["pattern"].as_str().unwrap();
        let one_char = pattern.replace("{1,200}", "");
        let validator =
            jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": one_char}))
                .unwrap();
        let mut mismatches = Vec::new();
        let above_bmp = (0x10000u32..=0x10ffff).step_by(997);
        for c in (0u32..0x10000).chain(above_bmp).filter_map(char::from_u32) {
            let schema_ok = validator.is_valid(&serde_json::Value::String(c.to_string()));
            if schema_ok != is_name_char(c) {
                mismatches.push(format!("U+{:04X}", c as u32));
            }
        }
        assert!(
            mismatches.is_empty(),
            "disagree with the schema: {mismatches:?}"
        );
    }

    proptest! {
        #[test]
        fn sanitized_names_are_always_valid(s in any::<String>()) {
            let out = sanitize_name(s.into());
            let n = out.chars().count();
            prop_assert!((1..=MAX_NAME_CHARS).contains(&n));
            prop_assert!(out.chars().all(is_name_char));
        }

        #[test]
        fn sanitizing_is_idempotent(s in any::<String>()) {
            let once = sanitize_name(s.into()).into_owned();
            prop_assert_eq!(sanitize_name(once.clone().into()), once.as_str());
        }
    }
}
