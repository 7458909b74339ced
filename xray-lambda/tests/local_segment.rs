//! Outside Lambda, `begin_segment` starts a real trace. Its own test binary, because the
//! daemon address and "am I in Lambda" are read from the environment once per process.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::receive_all;

#[test]
fn begin_segment_outside_lambda_starts_and_sends_a_trace() {
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    std::env::remove_var("AWS_LAMBDA_FUNCTION_NAME");
    std::env::remove_var("LAMBDA_TASK_ROOT");
    std::env::remove_var("AWS_XRAY_SDK_ENABLED");
    std::env::set_var(
        "AWS_XRAY_DAEMON_ADDRESS",
        daemon.local_addr().unwrap().to_string(),
    );

    let segment = xray_lambda::begin_segment("local-tool");
    segment.put_annotation("run", 1);
    let trace_id = segment.trace_id().expect("a recording segment");
    {
        let child = xray_lambda::begin_subsegment("step");
        xray_lambda::begin_subsegment("inner step").end();
        let header = xray_lambda::current_trace_header().unwrap();
        assert_eq!(header.root(), trace_id);
        assert_eq!(header.parent(), child.id());
    }
    segment.end();
    // No segment current any more: nothing is recorded.
    assert!(!xray_lambda::begin_subsegment("after").is_recording());

    let docs = receive_all(&daemon);
    let names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["inner step", "step", "local-tool"]);
    let seg = &docs[2];
    assert!(
        seg.get("type").is_none() && seg.get("parent_id").is_none(),
        "a top-level segment"
    );
    assert_eq!(seg["annotations"]["run"], 1);
    assert_eq!(docs[1]["parent_id"], seg["id"]);
    assert_eq!(docs[0]["parent_id"], docs[1]["id"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let epoch = u64::from_str_radix(&trace_id.to_string()[2..10], 16).unwrap();
    assert!(
        now.abs_diff(epoch) < 60,
        "a fresh trace id stamped with the time"
    );
    for d in &docs {
        assert_eq!(d["trace_id"], trace_id.to_string());
    }
}
