//! Documents grouped into traces and trees, and the service map's statistics.

use std::collections::BTreeMap;

use serde_json::Value;

/// One received document, by the fields the views use.
#[derive(Clone, Debug)]
pub struct Span {
    pub doc: Value,
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub start: f64,
    pub end: f64,
}

impl Span {
    pub fn from_doc(doc: Value) -> Option<Span> {
        let start = doc["start_time"].as_f64()?;
        Some(Span {
            id: doc["id"].as_str()?.to_owned(),
            parent_id: doc["parent_id"].as_str().map(str::to_owned),
            name: doc["name"].as_str()?.to_owned(),
            end: doc["end_time"].as_f64().unwrap_or(start),
            start,
            doc,
        })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.doc[name] == true
    }

    pub fn duration_ms(&self) -> f64 {
        (self.end - self.start) * 1000.0
    }
}

/// A node of the tree: a span, or the placeholder for a parent that lives in Lambda
/// (the function segment, which Lambda itself records).
#[derive(Debug)]
pub struct Node<'a> {
    pub span: Option<&'a Span>,
    pub placeholder_id: Option<&'a str>,
    pub children: Vec<Node<'a>>,
}

impl Node<'_> {
    /// What the missing parent of a placeholder is: a segment of the caller when its
    /// children are segments (a service that continued the caller's trace), else
    /// Lambda's function segment.
    pub fn placeholder_label(&self) -> String {
        let id = self.placeholder_id.unwrap_or("?");
        let segments = self
            .children
            .iter()
            .filter_map(|c| c.span)
            .any(|s| s.doc.get("type").is_none());
        if segments {
            format!("caller's segment {id}, not received")
        } else {
            format!("function segment {id}, recorded by Lambda")
        }
    }
}

/// All the spans of one trace.
#[derive(Debug)]
pub struct Trace {
    pub id: String,
    pub spans: Vec<Span>,
}

impl Trace {
    pub fn start(&self) -> f64 {
        self.spans.iter().map(|s| s.start).fold(f64::MAX, f64::min)
    }

    pub fn end(&self) -> f64 {
        self.spans.iter().map(|s| s.end).fold(f64::MIN, f64::max)
    }

    /// The trees of this trace: spans nest by `parent_id`; spans whose parent was not
    /// received hang under one placeholder per missing parent.
    pub fn roots(&self) -> Vec<Node<'_>> {
        let known: std::collections::HashSet<&str> =
            self.spans.iter().map(|s| s.id.as_str()).collect();
        let mut placeholders: BTreeMap<&str, Vec<Node<'_>>> = BTreeMap::new();
        let mut roots = Vec::new();
        for s in &self.spans {
            match s.parent_id.as_deref() {
                Some(p) if known.contains(p) => {}
                Some(p) => placeholders.entry(p).or_default().push(self.node(s)),
                None => roots.push(self.node(s)),
            }
        }
        roots.extend(placeholders.into_iter().map(|(id, children)| Node {
            span: None,
            placeholder_id: Some(id),
            children,
        }));
        roots
    }

    fn node<'a>(&'a self, span: &'a Span) -> Node<'a> {
        let mut children: Vec<&Span> = self
            .spans
            .iter()
            .filter(|c| c.parent_id.as_deref() == Some(span.id.as_str()))
            .collect();
        children.sort_by(|a, b| a.start.total_cmp(&b.start));
        Node {
            span: Some(span),
            placeholder_id: None,
            children: children.into_iter().map(|c| self.node(c)).collect(),
        }
    }

    /// The function's name: from its `## name` handler subsegment, if any.
    pub fn function_name(&self) -> String {
        self.spans
            .iter()
            .find_map(|s| s.name.strip_prefix("## ").map(str::to_owned))
            .unwrap_or_else(|| "function".to_owned())
    }
}

/// Groups documents, and the subsegments nested in them, by trace id, in order of first
/// arrival.
pub fn group(docs: Vec<Value>) -> Vec<Trace> {
    let mut traces: Vec<Trace> = Vec::new();
    for doc in docs.iter().flat_map(crate::document::flatten) {
        let Some(trace_id) = doc["trace_id"].as_str().map(str::to_owned) else {
            continue;
        };
        let Some(span) = Span::from_doc(doc) else {
            continue;
        };
        match traces.iter_mut().find(|t| t.id == trace_id) {
            Some(t) => t.spans.push(span),
            None => traces.push(Trace {
                id: trace_id,
                spans: vec![span],
            }),
        }
    }
    traces
}

/// One edge of the service map: calls from the function to a service.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Edge {
    pub calls: usize,
    pub total_ms: f64,
    pub errors: usize,
    pub throttles: usize,
    pub faults: usize,
}

impl Edge {
    pub fn average_ms(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_ms / self.calls as f64
        }
    }

    pub fn rate(&self, n: usize) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            n as f64 / self.calls as f64
        }
    }
}

/// The service map: for each function, the downstream services it called (subsegments
/// with `namespace` `aws` or `remote`), with counts, latency and error rates; and the
/// function's own invocations.
pub fn service_map(traces: &[Trace]) -> BTreeMap<String, (Edge, BTreeMap<String, Edge>)> {
    let mut map: BTreeMap<String, (Edge, BTreeMap<String, Edge>)> = BTreeMap::new();
    for t in traces {
        let entry = map.entry(t.function_name()).or_default();
        for s in &t.spans {
            let edge = if s.name.starts_with("## ") {
                &mut entry.0
            } else if matches!(s.doc["namespace"].as_str(), Some("aws" | "remote")) {
                entry.1.entry(s.name.clone()).or_default()
            } else {
                continue;
            };
            edge.calls += 1;
            edge.total_ms += s.duration_ms();
            edge.errors += s.flag("error") as usize;
            edge.throttles += s.flag("throttle") as usize;
            edge.faults += s.flag("fault") as usize;
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(id: &str, parent: &str, name: &str, start: f64, end: f64) -> Value {
        json!({"trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": id, "parent_id": parent,
               "name": name, "start_time": start, "end_time": end, "type": "subsegment"})
    }

    #[test]
    fn trees_hang_off_a_placeholder_for_the_function_segment() {
        let traces = group(vec![
            doc("b000000000000002", "a000000000000001", "child", 1.1, 1.2),
            doc("a000000000000001", "f000000000000000", "## fn", 1.0, 1.5),
        ]);
        assert_eq!(traces.len(), 1);
        let roots = traces[0].roots();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].placeholder_id, Some("f000000000000000"));
        let handler = &roots[0].children[0];
        assert_eq!(handler.span.unwrap().name, "## fn");
        assert_eq!(handler.children[0].span.unwrap().name, "child");
        assert_eq!(traces[0].function_name(), "fn");
    }

    #[test]
    fn service_map_counts_latency_and_errors() {
        let mut ddb_err = doc("c000000000000003", "a000000000000001", "DynamoDB", 1.0, 1.1);
        ddb_err["namespace"] = json!("aws");
        ddb_err["error"] = json!(true);
        let mut ddb_ok = doc("d000000000000004", "a000000000000001", "DynamoDB", 1.0, 1.3);
        ddb_ok["namespace"] = json!("aws");
        let traces = group(vec![
            doc("a000000000000001", "f000000000000000", "## fn", 1.0, 1.5),
            ddb_err,
            ddb_ok,
        ]);
        let map = service_map(&traces);
        let (function, services) = &map["fn"];
        assert_eq!(function.calls, 1);
        let ddb = &services["DynamoDB"];
        assert_eq!((ddb.calls, ddb.errors), (2, 1));
        assert!((ddb.average_ms() - 200.0).abs() < 1e-6);
        assert!((ddb.rate(ddb.errors) - 0.5).abs() < 1e-9);
    }
}
