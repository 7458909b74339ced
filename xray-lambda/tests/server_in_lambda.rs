//! `XRayServerLayer` inside a Lambda function: refused with one warning, requests
//! passed through untouched. A test binary of its own: it sets Lambda's variables for
//! the whole process.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use lambda_runtime::tower::{service_fn, Layer, ServiceExt};
use xray_lambda::http::XRayServerLayer;

#[tokio::test]
async fn inside_lambda_requests_pass_through_with_one_warning() {
    let (logs, _guard) = support::Logs::capture();
    // This binary has this one test: no other thread reads the environment meanwhile.
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "orders-function");

    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    for _ in 0..3 {
        let layer = XRayServerLayer::new("orders")
            .centralized_sampling(false)
            .daemon_address(&daemon.local_addr().unwrap().to_string());
        let svc = layer.layer(service_fn(|req: http::Request<String>| async move {
            assert_eq!(
                xray_lambda::current_trace_header(),
                None,
                "no context of ours"
            );
            let echoed = req.headers().get("x-amzn-trace-id").cloned();
            let mut response = http::Response::new(req.into_body());
            if let Some(h) = echoed {
                response.headers_mut().insert("echo", h);
            }
            Ok::<_, std::convert::Infallible>(response)
        }));
        let request = http::Request::builder()
            .header("x-amzn-trace-id", header)
            .body("body".to_owned())
            .unwrap();
        let response = svc.oneshot(request).await.unwrap();
        assert_eq!(response.headers().get("x-amzn-trace-id"), None);
        assert_eq!(
            response.headers()["echo"],
            header,
            "the request reached the handler untouched"
        );
        assert_eq!(response.into_body(), "body");
    }
    let mut buf = [0u8; 100];
    assert!(daemon.recv(&mut buf).is_err(), "nothing was sent");
    let warnings = logs.matching("XRayServerLayer inside a Lambda function");
    assert_eq!(warnings.len(), 1, "{:#?}", logs.lines());
    assert!(warnings[0].contains("WARN"));
}
