//! Checking datagrams and documents against the wire contract and AWS's schema.

use serde_json::Value;

/// AWS's segment document schema (draft-04), as published.
pub const SCHEMA: &str = include_str!("../schema/xray-segmentdocument-schema-v1.0.0.json");
const HEADER: &str = r#"{"format":"json","version":1}"#;

/// A reusable schema validator.
pub struct Validator(jsonschema::Validator);

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validator")
    }
}

impl Validator {
    pub fn new() -> Result<Self, String> {
        let schema: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
        jsonschema::draft4::new(&schema)
            .map(Validator)
            .map_err(|e| e.to_string())
    }

    /// The document in `datagram`, if it is one, and everything wrong with it.
    pub fn check(&self, datagram: &[u8]) -> (Option<Value>, Vec<String>) {
        let text = String::from_utf8_lossy(datagram);
        let Some((header, body)) = text.split_once('\n') else {
            return (None, vec!["no header line: a datagram is `{\"format\":\"json\",\"version\":1}` + newline + the document".into()]);
        };
        let mut problems = Vec::new();
        let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
        if compact != HEADER {
            problems.push(format!("header line is {header:?}, expected {HEADER}"));
        }
        let doc: Value = match serde_json::from_str(body) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("the document is not JSON: {e}"));
                return (None, problems);
            }
        };
        problems.extend(self.check_document(&doc));
        (Some(doc), problems)
    }

    /// Everything wrong with a document (the JSON after a datagram's header line).
    pub fn check_document(&self, doc: &Value) -> Vec<String> {
        let mut problems: Vec<String> = self
            .0
            .iter_errors(doc)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!(
                    "{} {e}",
                    if at.is_empty() {
                        "(document)".to_owned()
                    } else {
                        at
                    }
                )
            })
            .collect();
        if doc["type"] == "subsegment" && doc.get("parent_id").is_none() {
            problems.push("an independent subsegment needs parent_id".into());
        }
        for d in crate::document::flatten(doc) {
            if d.get("end_time").is_none() && d["in_progress"] != true {
                problems.push(format!(
                    "{}: neither end_time nor in_progress: true",
                    d["name"].as_str().unwrap_or("(no name)")
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_is_wrong() {
        let v = Validator::new().unwrap();
        let good = br#"{"format":"json","version":1}
{"name":"n","id":"1111222233334444","trace_id":"1-5759e988-bd862e3fe1be46a994272793","parent_id":"53995c3f42cd8ad8","type":"subsegment","start_time":1.0,"end_time":2.0}"#;
        let (doc, problems) = v.check(good);
        assert!(doc.is_some() && problems.is_empty(), "{problems:?}");
        let bad = br#"{"format":"json","version":1}
{"name":"bad!name","id":"short","trace_id":"1-5759e988-bd862e3fe1be46a994272793","type":"subsegment","start_time":1.0,"annotations":{"bad-key":1}}"#;
        let (_, problems) = v.check(bad);
        let all = problems.join("\n");
        assert!(all.contains("/name"), "{all}");
        assert!(all.contains("/id"), "{all}");
        assert!(all.contains("/annotations"), "{all}");
        assert!(all.contains("end_time"), "{all}");
        assert!(all.contains("parent_id"), "{all}");
        assert!(v.check(b"no newline").1[0].contains("header line"));
        let unended_nested = br#"{"format":"json","version":1}
{"name":"n","id":"1111222233334444","trace_id":"1-5759e988-bd862e3fe1be46a994272793","start_time":1.0,"end_time":2.0,"subsegments":[{"name":"inner","id":"2222333344445555","start_time":1.0}]}"#;
        let (_, problems) = v.check(unended_nested);
        assert_eq!(problems, ["inner: neither end_time nor in_progress: true"]);
    }
}
