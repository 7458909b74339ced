//! Builder settings win over the environment. Its own test binary, because it sets the
//! process environment.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use support::{event, receive_all, receive_datagrams, SAMPLED};
use xray_lambda::XRayLayer;

async fn handler(e: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    if e.payload["work"] == true {
        xray_lambda::begin_subsegment("work").end();
    }
    if e.payload["fail"] == true {
        return Err("boom".into());
    }
    Ok(json!({"ok": true}))
}

/// Runs one invocation of `handler` under `layer`, with a sampled trace.
async fn invoke(layer: &XRayLayer, payload: Value) {
    let mut svc = layer.layer(service_fn(handler));
    let _ = svc.call(event(payload, Some(SAMPLED))).await;
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

#[tokio::test]
async fn builder_settings_override_every_environment_setting() {
    let from_env = socket();
    let from_builder = socket();
    for (name, value) in [
        ("AWS_LAMBDA_FUNCTION_NAME", "env-fn"),
        ("AWS_XRAY_SDK_ENABLED", "false"),
        (
            "AWS_XRAY_DAEMON_ADDRESS",
            &from_env.local_addr().unwrap().to_string(),
        ),
        ("POWERTOOLS_SERVICE_NAME", "from-env"),
        ("POWERTOOLS_TRACER_CAPTURE_RESPONSE", "false"),
        ("POWERTOOLS_TRACER_CAPTURE_ERROR", "false"),
        ("XRAY_LAMBDA_STREAMING_THRESHOLD", "0"),
    ] {
        std::env::set_var(name, value);
    }

    // The environment switches tracing off: nothing reaches its daemon.
    invoke(&XRayLayer::new(), json!({})).await;
    assert!(
        receive_all(&from_env).is_empty(),
        "AWS_XRAY_SDK_ENABLED is read"
    );

    // Switched back on, every other environment setting shows.
    let env_only = XRayLayer::new().enabled(true);
    invoke(&env_only, json!({})).await;
    invoke(&env_only, json!({"fail": true})).await;
    let docs = receive_all(&from_env);
    assert_eq!(docs.len(), 2, "AWS_XRAY_DAEMON_ADDRESS is read: {docs:#?}");
    for d in &docs {
        assert_eq!(d["name"], "## env-fn");
        assert_eq!(d["annotations"]["Service"], "from-env");
        assert!(
            d.get("metadata").is_none(),
            "capture settings are read: {d}"
        );
    }
    assert_eq!(docs[1]["fault"], true);
    assert!(
        docs[1].get("cause").is_none(),
        "POWERTOOLS_TRACER_CAPTURE_ERROR is read"
    );

    // The builder wins over each of them.
    let layer = XRayLayer::new()
        .enabled(true)
        .daemon_address(&from_builder.local_addr().unwrap().to_string())
        .service_name("from-builder")
        .capture_response(true)
        .capture_error(true);
    invoke(&layer, json!({})).await;
    invoke(&layer, json!({"fail": true})).await;
    assert!(
        receive_all(&from_env).is_empty(),
        "nothing to the environment's daemon"
    );
    let docs = receive_all(&from_builder);
    assert_eq!(docs.len(), 2, "{docs:#?}");
    invoke(
        &layer.clone().streaming_threshold(1_000),
        json!({"work": true}),
    )
    .await;
    assert_eq!(receive_datagrams(&from_builder).len(), 1, "nested again");
    let (ok, failed) = (&docs[0], &docs[1]);
    for d in &docs {
        assert_eq!(d["name"], "## env-fn");
        assert_eq!(d["annotations"]["Service"], "from-builder");
    }
    assert_eq!(
        ok["metadata"]["from-builder"]["env-fn response"],
        json!({"ok": true})
    );
    assert_eq!(failed["cause"]["exceptions"][0]["message"], "boom");
}
