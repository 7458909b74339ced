//! Traces as terminal timelines, like the console's: name, duration, a proportional
//! bar, nesting by parent, annotations, and error/throttle/fault marked.

use std::fmt::Write;

use crate::trace::{Node, Trace};

const BAR: usize = 40;
const NAME: usize = 34;

/// The whole trace as text.
pub fn render(trace: &Trace) -> String {
    let (t0, t1) = (trace.start(), trace.end());
    let total = (t1 - t0).max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {}  {:.3} ms  {} documents",
        trace.id,
        total * 1000.0,
        trace.spans.len()
    );
    for root in trace.roots() {
        line(&mut out, &root, 0, t0, total);
    }
    out
}

fn line(out: &mut String, node: &Node<'_>, depth: usize, t0: f64, total: f64) {
    let indent = "  ".repeat(depth);
    match node.span {
        None => {
            let _ = writeln!(out, "{indent}[{}]", node.placeholder_label());
        }
        Some(s) => {
            let offset = (((s.start - t0) / total) * BAR as f64).round() as usize;
            let width = ((((s.end - s.start) / total) * BAR as f64).round() as usize).max(1);
            let offset = offset.min(BAR - 1);
            let width = width.min(BAR - offset);
            let bar = format!(
                "{}{}{}",
                " ".repeat(offset),
                "█".repeat(width),
                " ".repeat(BAR - offset - width)
            );
            let label: String = format!("{indent}{}", s.name).chars().take(NAME).collect();
            let mut flags = Vec::new();
            for f in ["error", "throttle", "fault"] {
                if s.flag(f) {
                    flags.push(f.to_uppercase());
                }
            }
            if !s.doc["metadata"]["xray_lambda"]["incomplete"].is_null() {
                flags.push("INCOMPLETE".into());
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(","))
            };
            let mut extra = String::new();
            if let Some(a) = s.doc["annotations"].as_object() {
                let pairs: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(extra, " {{{}}}", pairs.join(", "));
            }
            if let Some(op) = s.doc["aws"]["operation"].as_str() {
                let _ = write!(extra, " {op}");
            }
            if let Some(e) = s.doc["cause"]["exceptions"][0].as_object() {
                let _ = write!(
                    extra,
                    " ← {}: {}",
                    e.get("type").and_then(|v| v.as_str()).unwrap_or("?"),
                    e.get("message").and_then(|v| v.as_str()).unwrap_or("")
                );
            }
            let _ = writeln!(
                out,
                "{label:<NAME$} {:>9.3} ms |{bar}|{flags}{extra}",
                s.duration_ms()
            );
        }
    }
    for child in &node.children {
        line(out, child, depth + 1, t0, total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::group;
    use serde_json::json;

    #[test]
    fn nested_lines_with_bars_and_flags() {
        let t = group(vec![
            json!({"trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": "a000000000000001", "parent_id": "f000000000000000",
                   "type": "subsegment", "name": "## fn", "start_time": 1.0, "end_time": 1.1, "annotations": {"ColdStart": true}}),
            json!({"trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": "b000000000000002", "parent_id": "a000000000000001",
                   "name": "DynamoDB", "start_time": 1.05, "end_time": 1.1, "error": true, "aws": {"operation": "PutItem"},
                   "cause": {"exceptions": [{"id": "c000000000000003", "type": "ResourceNotFoundException", "message": "gone"}]}}),
        ])
        .remove(0);
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("[function segment f000000000000000"));
        assert!(
            lines[2].starts_with("  ## fn")
                && lines[2].contains("100.000 ms")
                && lines[2].contains("ColdStart=true")
        );
        assert!(
            lines[3].starts_with("    DynamoDB")
                && lines[3].contains("[ERROR]")
                && lines[3].contains("PutItem")
        );
        assert!(lines[3].contains("ResourceNotFoundException: gone"));
        // The child's bar starts halfway along.
        let bar = lines[3].split('|').nth(1).unwrap();
        assert_eq!(bar.chars().take_while(|c| *c == ' ').count(), 20);
    }

    #[test]
    fn a_segment_continuing_a_callers_trace_hangs_under_the_caller() {
        let t = group(vec![json!({
            "trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": "a000000000000001",
            "parent_id": "53995c3f42cd8ad8", "name": "orders", "start_time": 1.0, "end_time": 1.1
        })])
        .remove(0);
        let text = render(&t);
        assert!(
            text.contains("[caller's segment 53995c3f42cd8ad8, not received]"),
            "{text}"
        );
    }
}
