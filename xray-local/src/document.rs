//! The segments and subsegments a document holds.
//!
//! A document may carry finished subsegments nested in its `subsegments` array (the
//! Go and Java SDKs, and xray-lambda, send a whole subtree as one document); nested
//! ones have no `trace_id`, `parent_id` or `type`, since the enclosing document says.

use serde_json::{Map, Value};

/// Every segment and subsegment in `doc`, each as the document it would be if sent on
/// its own: a nested subsegment gets the document's `trace_id`, its enclosing
/// subsegment's `id` as `parent_id`, and `"type": "subsegment"`; none keeps its
/// `subsegments`. Children come before their parent, in their order.
pub fn flatten(doc: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let trace_id = doc.get("trace_id").cloned();
    push(doc, None, trace_id.as_ref(), &mut out);
    out
}

/// How many segments and subsegments `doc` holds, itself included.
pub fn count(doc: &Value) -> usize {
    1 + nested(doc).iter().map(count).sum::<usize>()
}

fn nested(doc: &Value) -> &[Value] {
    doc.get("subsegments")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn push(doc: &Value, parent: Option<&Value>, trace_id: Option<&Value>, out: &mut Vec<Value>) {
    let Some(fields) = doc.as_object() else {
        out.push(doc.clone());
        return;
    };
    for child in nested(doc) {
        push(child, fields.get("id"), trace_id, out);
    }
    let mut alone: Map<String, Value> = fields.clone();
    alone.remove("subsegments");
    if let Some(parent) = parent {
        if let Some(t) = trace_id {
            alone.insert("trace_id".into(), t.clone());
        }
        alone.insert("parent_id".into(), parent.clone());
        alone.insert("type".into(), "subsegment".into());
    }
    out.push(Value::Object(alone));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_subsegments_become_documents_of_their_own() {
        let doc = json!({
            "trace_id": "1-5759e988-bd862e3fe1be46a994272793", "parent_id": "53995c3f42cd8ad8",
            "type": "subsegment", "id": "a", "name": "## fn", "start_time": 1.0, "end_time": 2.0,
            "subsegments": [
                {"id": "b", "name": "b", "start_time": 1.1, "end_time": 1.2,
                 "subsegments": [{"id": "c", "name": "c", "start_time": 1.1, "end_time": 1.15}]},
                {"id": "d", "name": "d", "start_time": 1.3, "end_time": 1.4}
            ]
        });
        let flat = flatten(&doc);
        let names: Vec<_> = flat.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["c", "b", "d", "## fn"]);
        assert_eq!(count(&doc), 4);
        assert_eq!(flat[0]["parent_id"], "b");
        assert_eq!(flat[1]["parent_id"], "a");
        assert_eq!(flat[3]["parent_id"], "53995c3f42cd8ad8");
        for d in &flat {
            assert_eq!(d["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
            assert_eq!(d["type"], "subsegment");
            assert!(d.get("subsegments").is_none());
        }
    }

    #[test]
    fn a_segment_keeps_its_shape() {
        let doc = json!({"trace_id": "t", "id": "s", "name": "seg", "start_time": 1.0,
                         "subsegments": [{"id": "x", "name": "x", "start_time": 1.0}]});
        let flat = flatten(&doc);
        assert!(flat[1].get("type").is_none() && flat[1].get("parent_id").is_none());
        assert_eq!(flat[0]["parent_id"], "s");
    }
}
