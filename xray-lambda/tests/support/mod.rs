//! What the integration tests that listen as the daemon share.

#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;

use serde_json::Value;

/// Every document that reaches `socket` until its read timeout, each checked for the
/// daemon's header line and validated against the segment document schema.
pub fn receive_all(socket: &UdpSocket) -> Vec<Value> {
    let schema = serde_json::from_str(include_str!(
        "../../../schema/xray-segmentdocument-schema-v1.0.0.json"
    ))
    .unwrap();
    let validator = jsonschema::draft4::new(&schema).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = socket.recv(&mut buf) {
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        assert_eq!(header, r#"{"format":"json","version":1}"#);
        let doc: Value = serde_json::from_str(body).unwrap();
        assert!(validator.is_valid(&doc), "invalid document {doc}");
        out.push(doc);
    }
    out
}
