//! The top-level fields of a JSON object, found without parsing their values. An AWS
//! request body holds the few parameters X-Ray records next to the user's data (a
//! DynamoDB item, up to 400 KB), which is skipped here at a few instructions a byte;
//! parsing it, even into nothing, costs several times that.

/// Calls `each` with every field of the JSON object `body`, in order: the key as written
/// between its quotes (escapes left as they are), and the value's text. `None` when
/// `body` is not one object: its structure (brackets, strings, commas and colons
/// between fields) is checked, the values that are not wanted are not, and are handed
/// to `each` as found. `each` may have seen the fields before the fault.
pub(super) fn fields<'a>(body: &'a [u8], mut each: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    let mut at = skip_space(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(body, at + 1);
    if body.get(at) == Some(&b'}') {
        return end(body, at + 1);
    }
    loop {
        if body.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(body, at + 1)?;
        let key = body.get(at + 1..key_end)?;
        at = skip_space(body, key_end + 1);
        if body.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_space(body, at + 1);
        let value_end = value_end(body, value_start)?;
        each(key, body.get(value_start..value_end)?);
        at = skip_space(body, value_end);
        match body.get(at)? {
            b',' => at = skip_space(body, at + 1),
            b'}' => return end(body, at + 1),
            _ => return None,
        }
    }
}

/// Nothing but whitespace after the object.
fn end(body: &[u8], at: usize) -> Option<()> {
    (skip_space(body, at) == body.len()).then_some(())
}

fn skip_space(body: &[u8], mut at: usize) -> usize {
    while body.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// Where the string whose text starts at `from` ends: its closing quote. A byte at a
/// time: the strings of an item are short, so a faster search would not pay for
/// starting.
fn string_end(body: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match *body.get(at)? {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// Where the value starting at `from` ends (exclusive).
fn value_end(body: &[u8], from: usize) -> Option<usize> {
    match body.get(from)? {
        b'"' => string_end(body, from + 1).map(|quote| quote + 1),
        b'{' | b'[' => {
            // Brackets are counted, not matched: the structure of the user's data is
            // not ours to check, only where it ends.
            let mut depth = 0usize;
            let mut at = from;
            while let Some(&b) = body.get(at) {
                match b {
                    b'"' => at = string_end(body, at + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            None
        }
        // A number, `true`, `false` or `null`: up to what follows a value.
        _ => {
            let len = body[from..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(body.len() - from);
            (len > 0).then_some(from + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn all(body: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        fields(body.as_bytes(), |k, v| {
            out.push((
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ));
        })?;
        Some(out)
    }

    #[test]
    fn finds_each_field_and_skips_nested_values() {
        let body = r#" { "Item" : {"a":{"S":"x}]\"{"},"l":[1,{"b":[]}]} ,"TableName":"users",
            "Limit": 10, "ConsistentRead":true, "Empty":"", "Odd":"\\" } "#;
        let fields = all(body).unwrap();
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "Item",
                "TableName",
                "Limit",
                "ConsistentRead",
                "Empty",
                "Odd"
            ]
        );
        assert_eq!(fields[0].1, r#"{"a":{"S":"x}]\"{"},"l":[1,{"b":[]}]}"#);
        assert_eq!(fields[1].1, r#""users""#);
        assert_eq!(fields[2].1, "10");
        assert_eq!(fields[3].1, "true");
        assert_eq!(fields[5].1, r#""\\""#);
        assert_eq!(all("{}").unwrap(), []);
        assert_eq!(all(" { } ").unwrap(), []);
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for body in [
            "",
            "[]",
            "\"x\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":\"unterminated}",
            "{\"a\":{\"b\":1}",
            "{\"a\":1} trailing",
            "{a:1}",
        ] {
            assert_eq!(all(body), None, "{body}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Quotes, backslashes, brackets and control characters inside strings.
            "[a-z\"\\\\{}\\[\\],: \u{1}\u{e9}\u{1F600}]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map("[a-zA-Z\"\\\\ ]{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_a_json_parser(
            object in proptest::collection::btree_map("[a-zA-Z\"\\\\]{0,8}", json_value(), 0..8),
            pretty in any::<bool>(),
        ) {
            let object: serde_json::Map<String, Value> = object.into_iter().collect();
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                serde_json::to_string(&object).unwrap()
            };
            // Compared with the parser's reading of the whole text, not with `object`:
            // a float need not survive printing and parsing exactly.
            let whole: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
            let found = all(&text).unwrap();
            prop_assert_eq!(found.len(), whole.len());
            for ((key, value), (raw_key, raw_value)) in whole.iter().zip(&found) {
                let raw_key: String = serde_json::from_str(&format!("\"{raw_key}\"")).unwrap();
                prop_assert_eq!(key, &raw_key);
                let parsed: Value = serde_json::from_str(raw_value).unwrap();
                prop_assert_eq!(value, &parsed);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = fields(&body, |_, _| {});
        }

        #[test]
        fn json_like_text_never_panics(body in "[{}\\[\\]\",:a1\\\\ ]{0,64}") {
            let _ = fields(body.as_bytes(), |_, _| {});
        }
    }
}
