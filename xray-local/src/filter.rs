//! Filter expressions over annotations, as in the X-Ray console:
//! `annotation.ColdStart = true`, `annotation.userId = "u-1" AND annotation.n != 3`.

use serde_json::Value;

use crate::trace::Trace;

/// A parsed filter: every condition must hold for some span of the trace.
#[derive(Debug, PartialEq)]
pub struct Filter(Vec<Condition>);

#[derive(Debug, PartialEq)]
struct Condition {
    key: String,
    equal: bool,
    value: Value,
}

impl Filter {
    /// Parses `annotation.KEY (= | !=) VALUE [AND …]`; VALUE is `true`, `false`, a number
    /// or a double-quoted string.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut conditions = Vec::new();
        for part in split_and(text) {
            let part = part.trim();
            let (lhs, equal, rhs) = if let Some((l, r)) = part.split_once("!=") {
                (l, false, r)
            } else if let Some((l, r)) = part.split_once('=') {
                (l, true, r)
            } else {
                return Err(format!(
                    "{part:?}: expected `annotation.KEY = VALUE` or `!=`"
                ));
            };
            let key = lhs
                .trim()
                .strip_prefix("annotation.")
                .filter(|k| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .ok_or_else(|| {
                    format!("{:?}: the left side must be `annotation.KEY`", lhs.trim())
                })?;
            let rhs = rhs.trim();
            let value = match rhs {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ if rhs.len() >= 2 && rhs.starts_with('"') && rhs.ends_with('"') => {
                    Value::String(rhs[1..rhs.len() - 1].to_owned())
                }
                _ => rhs.parse::<f64>().map(Value::from).map_err(|_| {
                    format!("{rhs:?}: expected true, false, a number or a \"string\"")
                })?,
            };
            conditions.push(Condition {
                key: key.to_owned(),
                equal,
                value,
            });
        }
        if conditions.is_empty() {
            return Err("empty filter".into());
        }
        Ok(Filter(conditions))
    }

    /// Whether the trace matches: each condition holds on at least one span.
    pub fn matches(&self, trace: &Trace) -> bool {
        self.0.iter().all(|c| {
            trace.spans.iter().any(|s| {
                let found = &s.doc["annotations"][&c.key];
                if found.is_null() {
                    return false;
                }
                same(found, &c.value) == c.equal
            })
        })
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Splits on ` AND ` outside quotes.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes && text[i..].starts_with(" AND ") {
            parts.push(&text[start..i]);
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::group;
    use serde_json::json;

    fn trace(annotations: Value) -> Trace {
        group(vec![
            json!({"trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": "a000000000000001",
                          "name": "n", "start_time": 1.0, "annotations": annotations}),
        ])
        .remove(0)
    }

    #[test]
    fn matches_annotations() {
        let t = trace(json!({"ColdStart": true, "userId": "u-1", "n": 3}));
        assert!(Filter::parse("annotation.ColdStart = true")
            .unwrap()
            .matches(&t));
        assert!(!Filter::parse("annotation.ColdStart = false")
            .unwrap()
            .matches(&t));
        assert!(
            Filter::parse(r#"annotation.userId = "u-1" AND annotation.n = 3"#)
                .unwrap()
                .matches(&t)
        );
        assert!(Filter::parse("annotation.n != 4").unwrap().matches(&t));
        assert!(!Filter::parse("annotation.missing = 1").unwrap().matches(&t));
        assert!(Filter::parse(r#"annotation.userId = "a AND b""#).is_ok());
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(Filter::parse("ColdStart = true")
            .unwrap_err()
            .contains("annotation.KEY"));
        assert!(Filter::parse("annotation.x = maybe")
            .unwrap_err()
            .contains("expected true"));
        assert!(Filter::parse("annotation.x")
            .unwrap_err()
            .contains("expected"));
    }
}
