//! After the application replaces the panic hook (without chaining to the one this
//! crate installed), panics are still recorded, and never with an earlier panic's
//! message or exception. Its own test binary, because the panic hook is process-wide.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use support::{block_on, event, Collector, SAMPLED};
use xray_lambda::{begin_subsegment, FutureExt, XRayLayer};

#[test]
fn panics_after_the_hook_was_replaced_are_not_given_an_earlier_ones_record() {
    let daemon = Collector::start();
    let mut svc = XRayLayer::new()
        .daemon_address(&daemon.address)
        .enabled(true)
        .layer(service_fn(|_: LambdaEvent<Value>| async {
            // Seen by this crate's hook, recorded through a subsegment.
            let _ = catch_unwind(|| {
                let _g = begin_subsegment("before_replacing");
                panic!("seen by the hook");
            });
            // Seen by the hook, caught without passing through any subsegment.
            let _ = catch_unwind(|| panic!("caught at once"));
            std::panic::set_hook(Box::new(|_| {}));
            let _ = catch_unwind(|| {
                let _g = begin_subsegment("after_replacing");
                panic!("not seen by the hook");
            });
            // A future catches the payload itself: its message is known.
            let caught = async {
                panic!("in a future");
            }
            .in_subsegment("future_after_replacing");
            let _ = AssertUnwindSafe(caught).catch_unwind_fut().await;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
    block_on(svc.call(event(json!({}), Some(SAMPLED)))).unwrap();
    let docs = daemon.all();
    let exception = |name: &str| {
        let d = docs.iter().find(|d| d["name"] == name).unwrap();
        assert_eq!(d["fault"], true, "{d}");
        d["cause"]["exceptions"][0].clone()
    };
    let before = exception("before_replacing");
    assert_eq!(before["message"], "seen by the hook");
    let after = exception("after_replacing");
    assert!(after.is_object(), "its own exception, not a reference");
    assert_ne!(after["id"], before["id"]);
    let message = after["message"].as_str().unwrap();
    assert!(
        !message.contains("seen by the hook") && !message.contains("caught at once"),
        "{message}"
    );
    assert!(after.get("stack").is_none(), "no other panic's location");
    let future = exception("future_after_replacing");
    assert_eq!(future["message"], "in a future");
}

/// `catch_unwind` for a future, without a dependency for it.
trait CatchUnwindFut: std::future::Future + Sized {
    async fn catch_unwind_fut(self) -> std::thread::Result<Self::Output>;
}

impl<F: std::future::Future + std::panic::UnwindSafe> CatchUnwindFut for F {
    async fn catch_unwind_fut(self) -> std::thread::Result<F::Output> {
        let mut fut = std::pin::pin!(self);
        std::future::poll_fn(move |cx| {
            catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
                .map_or_else(|e| std::task::Poll::Ready(Err(e)), |p| p.map(Ok))
        })
        .await
    }
}
