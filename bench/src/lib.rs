//! Shared by the benches and the comparison driver: running code inside a Lambda
//! invocation's trace context, and a UDP sink standing in for the daemon.

use std::future::Future;
use std::net::UdpSocket;

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use xray_lambda::XRayLayer;

/// A loopback UDP socket drained by a thread, so sends never back up.
#[derive(Debug)]
pub struct Sink {
    pub address: String,
}

impl Sink {
    pub fn start() -> std::io::Result<Sink> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let address = socket.local_addr()?.to_string();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while socket.recv(&mut buf).is_ok() {}
        });
        Ok(Sink { address })
    }
}

/// `Root=…;Parent=…;Sampled=<sampled>` for a fixed trace.
pub fn header(sampled: bool) -> String {
    format!(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled={}",
        u8::from(sampled)
    )
}

/// Runs `f` as the body of an invocation traced under `header`, with documents going
/// to `daemon`, and returns what it returned.
pub fn in_invocation<R>(daemon: &str, header: &str, f: impl FnOnce() -> R) -> R {
    let mut f = Some(f);
    let mut out = None;
    {
        let mut svc = XRayLayer::new()
            .daemon_address(daemon)
            .enabled(true)
            .capture_response(false)
            .layer(service_fn(|_: LambdaEvent<()>| {
                // The handler's synchronous part runs inside the invocation's context.
                if let Some(f) = f.take() {
                    out = Some(f());
                }
                async { Ok::<(), lambda_runtime::Error>(()) }
            }));
        let mut ctx = lambda_runtime::Context::default();
        ctx.xray_trace_id = Some(header.to_owned());
        let fut = svc.call(LambdaEvent::new((), ctx));
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let _ = fut
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
    }
    match out {
        Some(r) => r,
        None => unreachable_invocation(),
    }
}

#[allow(clippy::panic)]
fn unreachable_invocation() -> ! {
    panic!("the handler did not run")
}
