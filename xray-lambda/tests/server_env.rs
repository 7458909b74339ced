//! `XRayServerLayer` and the environment: `AWS_XRAY_TRACING_NAME` names the segments,
//! `XRAY_LAMBDA_SAMPLING_RULES` wins over rules given in code, and a malformed file
//! there is logged as an error naming its line and field. A test binary of its own:
//! it sets variables for the whole process.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use lambda_runtime::tower::{service_fn, Layer, ServiceExt};
use xray_lambda::http::{SamplingRules, XRayServerLayer};

/// Serves one request without a trace header; gives the segment sent, if any.
async fn serve(layer: XRayServerLayer, daemon: &UdpSocket) -> Option<serde_json::Value> {
    let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));
    svc.oneshot(http::Request::new(())).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = daemon.recv(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    Some(serde_json::from_str(text.split_once('\n').unwrap().1).unwrap())
}

#[tokio::test]
async fn the_environment_names_segments_and_chooses_the_rules_file() {
    let (logs, _guard) = support::Logs::capture();
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let address = daemon.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("xray-server-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let all = dir.join("all.json");
    std::fs::write(
        &all,
        r#"{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}"#,
    )
    .unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        "{\"version\": 2,\n \"default\": {\"fixed_target\": 0, \"rate\": 7}}",
    )
    .unwrap();
    let none = || {
        SamplingRules::from_json(r#"{"version": 2, "default": {"fixed_target": 0, "rate": 0}}"#)
            .unwrap()
    };
    let layer = || {
        XRayServerLayer::new("in-code")
            .centralized_sampling(false)
            .daemon_address(&address)
    };

    // This binary has this one test: no other thread reads the environment meanwhile.
    std::env::set_var("AWS_XRAY_TRACING_NAME", "from-env");
    std::env::set_var("XRAY_LAMBDA_SAMPLING_RULES", &all);
    let segment = serve(layer().sampling_rules(none()), &daemon).await;
    let segment = segment.expect("the file in the environment samples everything");
    assert_eq!(segment["name"], "from-env");

    std::env::remove_var("AWS_XRAY_TRACING_NAME");
    std::env::remove_var("XRAY_LAMBDA_SAMPLING_RULES");
    assert_eq!(
        serve(layer().sampling_rules(none()), &daemon).await,
        None,
        "the rules in code"
    );
    let segment = serve(layer().sampling_rules_file(&all).unwrap(), &daemon).await;
    assert_eq!(segment.unwrap()["name"], "in-code");

    std::env::set_var("XRAY_LAMBDA_SAMPLING_RULES", &broken);
    let _ = serve(layer(), &daemon).await;
    let errors = logs.matching("ERROR");
    assert_eq!(errors.len(), 1, "{:#?}", logs.lines());
    assert!(
        errors[0].contains(&format!(
            "X-Ray sampling rules file {}, line 2 column",
            broken.display()
        )) && errors[0].contains("invalid `rate`")
            && errors[0].contains("sampling by X-Ray's default rule"),
        "{}",
        errors[0]
    );
    // With rules in code, those are used instead.
    let segment = serve(layer().sampling_rules_file(&all).unwrap(), &daemon).await;
    assert!(segment.is_some(), "the rules in code sample everything");
    let fallback = logs.matching("sampling by the rules given in code");
    assert_eq!(fallback.len(), 1, "{:#?}", logs.lines());
    std::fs::remove_dir_all(&dir).unwrap();
}
