//! One self-contained HTML page: each trace as a timeline, and the service map
//! (function → services, with calls, average latency and error rates).

use std::fmt::Write;

use crate::trace::{service_map, Node, Trace};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#16191f}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
.trace{border:1px solid #d5dbdb;border-radius:6px;padding:10px;margin:12px 0}\
.row{display:flex;align-items:center;height:24px;border-bottom:1px solid #f2f3f3}\
.name,.dur,.ann{box-sizing:border-box;flex-shrink:0}.name{width:300px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}\
.dur{width:90px;text-align:right;padding-right:10px;color:#545b64}\
.track{position:relative;flex:1;height:14px;background:#fafafa}\
.bar{position:absolute;height:14px;border-radius:2px;background:#0073bb;min-width:2px}\
.bar.error{background:#ff9900}.bar.throttle{background:#8c4fff}.bar.fault{background:#d13212}\
.ann{width:280px;color:#545b64;font-size:12px;padding-left:8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}\
.flag{font-size:11px;font-weight:600;color:#fff;border-radius:3px;padding:1px 4px;margin-left:6px}\
.flag.error{background:#ff9900}.flag.throttle{background:#8c4fff}.flag.fault{background:#d13212}\
.placeholder{width:auto;color:#879596;font-style:italic}";

/// The page for `traces`.
pub fn render(traces: &[Trace]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>X-Ray traces</title><style>{STYLE}</style></head><body>\
         <h1>X-Ray traces ({} traces, {} documents)</h1><h2>Service map</h2>",
        traces.len(),
        traces.iter().map(|t| t.spans.len()).sum::<usize>()
    );
    out.push_str(&service_map_svg(traces));
    out.push_str("<h2>Traces</h2>");
    for t in traces {
        let total = (t.end() - t.start()).max(1e-9);
        let _ = write!(
            out,
            "<div class=\"trace\"><div><b>{}</b> — {:.3} ms</div>",
            escape(&t.id),
            total * 1000.0
        );
        for root in t.roots() {
            row(&mut out, &root, 0, t.start(), total);
        }
        out.push_str("</div>");
    }
    out.push_str("</body></html>");
    out
}

fn row(out: &mut String, node: &Node<'_>, depth: usize, t0: f64, total: f64) {
    let pad = depth * 16;
    match node.span {
        None => {
            let _ = write!(
                out,
                "<div class=\"row\"><div class=\"name placeholder\" style=\"padding-left:{pad}px\">{}</div></div>",
                escape(&node.placeholder_label())
            );
        }
        Some(s) => {
            let left = (s.start - t0) / total * 100.0;
            let width = ((s.end - s.start) / total * 100.0).max(0.2);
            let kind = ["fault", "throttle", "error"]
                .into_iter()
                .find(|f| s.flag(f))
                .unwrap_or("");
            let flags: String = ["error", "throttle", "fault"]
                .into_iter()
                .filter(|f| s.flag(f))
                .map(|f| format!("<span class=\"flag {f}\">{f}</span>"))
                .collect();
            let annotations = s.doc["annotations"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "<div class=\"row\"><div class=\"name\" style=\"padding-left:{pad}px\" title=\"{name}\">{name}{flags}</div>\
                 <div class=\"dur\">{:.3} ms</div><div class=\"track\"><div class=\"bar {kind}\" style=\"left:{left:.3}%;width:{width:.3}%\"></div></div>\
                 <div class=\"ann\" title=\"{ann}\">{ann}</div></div>",
                s.duration_ms(),
                ann = escape(&annotations),
                name = escape(&s.name),
            );
        }
    }
    for child in &node.children {
        row(out, child, depth + 1, t0, total);
    }
}

/// Boxes for each function and the services it called, with arrows between them.
fn service_map_svg(traces: &[Trace]) -> String {
    let map = service_map(traces);
    let rows: usize = map.values().map(|(_, s)| s.len().max(1)).sum();
    let height = rows * 90 + 20;
    let mut svg = format!(
        "<svg width=\"760\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui,sans-serif\" font-size=\"12\">\
         <defs><marker id=\"arrow\" markerWidth=\"10\" markerHeight=\"10\" refX=\"9\" refY=\"3\" orient=\"auto\"><path d=\"M0,0 L0,6 L9,3 z\" fill=\"#545b64\"/></marker></defs>"
    );
    let mut y = 10;
    for (function, (own, services)) in &map {
        let block = services.len().max(1) * 90;
        let fy = y + block / 2 - 35;
        let _ = write!(
            svg,
            "<rect x=\"10\" y=\"{fy}\" width=\"220\" height=\"70\" rx=\"8\" fill=\"#f1faff\" stroke=\"#0073bb\"/>\
             <text x=\"20\" y=\"{}\" font-weight=\"bold\">λ {}</text><text x=\"20\" y=\"{}\">{} invocations, avg {:.1} ms</text>\
             <text x=\"20\" y=\"{}\">faults {:.0}%</text>",
            fy + 22,
            escape(function),
            fy + 42,
            own.calls,
            own.average_ms(),
            fy + 60,
            own.rate(own.faults) * 100.0
        );
        for (i, (service, e)) in services.iter().enumerate() {
            let sy = y + i * 90 + 10;
            let color = if e.faults > 0 {
                "#d13212"
            } else if e.errors + e.throttles > 0 {
                "#ff9900"
            } else {
                "#1d8102"
            };
            let _ = write!(
                svg,
                "<line x1=\"230\" y1=\"{}\" x2=\"458\" y2=\"{}\" stroke=\"#545b64\" marker-end=\"url(#arrow)\"/>\
                 <rect x=\"460\" y=\"{sy}\" width=\"280\" height=\"70\" rx=\"8\" fill=\"#fff\" stroke=\"{color}\" stroke-width=\"2\"/>\
                 <text x=\"470\" y=\"{}\" font-weight=\"bold\">{}</text>\
                 <text x=\"470\" y=\"{}\">{} calls, avg {:.1} ms</text>\
                 <text x=\"470\" y=\"{}\">errors {:.0}% · throttles {:.0}% · faults {:.0}%</text>",
                fy + 35,
                sy + 35,
                sy + 22,
                escape(service),
                sy + 42,
                e.calls,
                e.average_ms(),
                sy + 60,
                e.rate(e.errors) * 100.0,
                e.rate(e.throttles) * 100.0,
                e.rate(e.faults) * 100.0
            );
        }
        y += block;
    }
    svg.push_str("</svg>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::group;
    use serde_json::json;

    #[test]
    fn page_has_timeline_rows_and_service_map() {
        let t = group(vec![
            json!({"trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": "a000000000000001", "parent_id": "f000000000000000",
                   "name": "## fn<x>", "start_time": 1.0, "end_time": 1.1}),
            json!({"trace_id": "1-5759e988-bd862e3fe1be46a994272793", "id": "b000000000000002", "parent_id": "a000000000000001",
                   "name": "S3", "namespace": "aws", "start_time": 1.05, "end_time": 1.1, "fault": true}),
        ]);
        let page = render(&t);
        assert!(page.contains("## fn&lt;x&gt;"), "names are escaped");
        assert!(page.contains("class=\"bar fault\" style=\"left:50.000%;width:50.000%\""));
        assert!(
            page.contains("λ fn&lt;x&gt;")
                && page.contains(">S3</text>")
                && page.contains("1 calls")
        );
        assert!(page.contains("faults 100%"));
    }
}
