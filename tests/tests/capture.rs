//! `#[capture]` at run time: the documents captured functions send, in-process under
//! `XRayLayer` with a real UDP daemon that validates every document against the schema.

// `unsafe` only to show `#[capture]` on an `unsafe fn`.
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)]

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use xray_lambda::{begin_subsegment, capture, FutureExt};
use xray_lambda_e2e::harness::{by_name, fixture, run_invocation};

const FACADE: &str = "53995c3f42cd8ad8";

/// Runs `work` as a sampled invocation's handler; returns the documents it sent
/// (`expected` of them plus the handler's).
async fn traced<F, Fut>(expected: usize, work: F) -> Vec<Value>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let root = xray_lambda::TraceId::new();
    let docs = run_invocation(
        &format!("Root={root};Parent={FACADE};Sampled=1"),
        expected + 1,
        work,
    )
    .await;
    assert_eq!(docs.len(), expected + 1, "{docs:#?}");
    docs
}

fn handler(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["name"].as_str().unwrap().starts_with("## "))
        .unwrap()
}

// ---- The Python reference scenario (sample 2, 11, 12–13) ----

#[capture("xray_function_sample2")]
fn sample2() {
    let s = begin_subsegment("sample2_child");
    s.put_annotation("child_ok", true);
    s.put_metadata("n", &42);
}

#[derive(Debug)]
struct ValueError(&'static str);
impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for ValueError {}

#[derive(Debug)]
struct KeyError(&'static str);
impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0)
    }
}
impl std::error::Error for KeyError {}

#[capture]
fn raises_value_error() -> Result<(), ValueError> {
    Err(ValueError("user id must not be empty"))
}

#[capture]
fn inner_raises() -> Result<(), KeyError> {
    Err(KeyError("missing-key"))
}

#[capture]
fn outer_propagates() -> Result<(), KeyError> {
    inner_raises()?;
    Ok(())
}

#[tokio::test]
async fn sample2_matches_the_reference() {
    let docs = traced(2, || async { sample2() }).await;
    let (r_child, r_fn) = (fixture("05.json"), fixture("06.json"));
    let child = by_name(&docs, "sample2_child");
    let f = by_name(&docs, "xray_function_sample2");
    assert_eq!(f["parent_id"], handler(&docs)["id"]);
    // The same tree as the reference: the child under the captured function.
    assert_eq!(
        child["parent_id"] == f["id"],
        r_child["parent_id"] == r_fn["id"]
    );
    assert_eq!(child["annotations"], r_child["annotations"]);
    assert_eq!(child["metadata"], r_child["metadata"]);
    assert_eq!(f.get("annotations"), r_fn.get("annotations"));
    let names: Vec<_> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        names[..2],
        ["sample2_child", "xray_function_sample2"],
        "children first, as in 05, 06"
    );
}

#[tokio::test]
async fn a_returned_error_matches_the_reference() {
    let docs = traced(1, || async {
        assert!(raises_value_error().is_err());
    })
    .await;
    let reference = fixture("11.json");
    let ours = by_name(&docs, "raises_value_error");
    assert_eq!(ours["fault"], reference["fault"]);
    let (e, r) = (
        &ours["cause"]["exceptions"][0],
        &reference["cause"]["exceptions"][0],
    );
    assert_eq!(
        (&e["type"], &e["message"], &e["remote"]),
        (&r["type"], &r["message"], &r["remote"])
    );
    assert_eq!(e["stack"][0]["label"], "raises_value_error");
    assert!(e["stack"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("capture.rs"));
}

#[tokio::test]
async fn an_error_propagating_is_referenced_not_repeated() {
    let docs = traced(2, || async {
        assert!(outer_propagates().is_err());
    })
    .await;
    let (r_inner, r_outer) = (fixture("12.json"), fixture("13.json"));
    let inner = by_name(&docs, "inner_raises");
    let outer = by_name(&docs, "outer_propagates");
    assert_eq!(
        inner["parent_id"] == outer["id"],
        r_inner["parent_id"] == r_outer["id"]
    );
    let ex = &inner["cause"]["exceptions"][0];
    assert_eq!(
        (&ex["type"], &ex["message"]),
        (
            &r_inner["cause"]["exceptions"][0]["type"],
            &r_inner["cause"]["exceptions"][0]["message"]
        )
    );
    // 13.json: the outer subsegment's cause is the id of the inner exception.
    assert_eq!(
        outer["cause"] == ex["id"],
        r_outer["cause"] == r_inner["cause"]["exceptions"][0]["id"]
    );
    assert_eq!(outer["fault"], r_outer["fault"]);
}

// ---- Forms ----

struct Store {
    hits: u32,
}

impl Store {
    #[capture]
    fn by_ref(&self) -> u32 {
        self.hits
    }

    #[capture(name = "store.bump")]
    fn by_mut(&mut self) {
        self.hits += 1;
    }

    #[capture]
    fn by_value(self) -> u32 {
        self.hits
    }

    #[capture]
    async fn async_method(&self, extra: u32) -> u32 {
        tokio::task::yield_now().await;
        self.hits + extra
    }
}

#[capture]
fn generic<'a, T>(items: &'a [T], pick: impl Fn(&T) -> bool) -> Option<&'a T>
where
    T: fmt::Debug,
{
    items.iter().find(|i| pick(i))
}

#[capture]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

/// # Safety
/// `p` must point to a valid `u32`.
#[capture]
unsafe fn read_raw(p: *const u32) -> u32 {
    unsafe { *p }
}

#[async_trait::async_trait]
trait Repository {
    async fn load(&self, id: u32) -> Result<String, std::io::Error>;
}

struct Db;

#[async_trait::async_trait]
impl Repository for Db {
    #[capture("Db.load")]
    async fn load(&self, id: u32) -> Result<String, std::io::Error> {
        tokio::task::yield_now().await;
        let _child = begin_subsegment("query");
        if id == 0 {
            return Err(std::io::Error::other("no such user"));
        }
        Ok(format!("user {id}"))
    }
}

#[tokio::test]
async fn methods_generics_impl_trait_unsafe_and_async_trait() {
    let docs = traced(11, || async {
        let mut store = Store { hits: 1 };
        assert_eq!(store.by_ref(), 1);
        store.by_mut();
        assert_eq!(store.async_method(10).await, 12);
        assert_eq!(store.by_value(), 2);
        assert_eq!(generic(&[1, 2, 3], |n| *n > 1), Some(&2));
        assert_eq!(evens(5).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(unsafe { read_raw(&7) }, 7);
        assert_eq!(Db.load(1).await.unwrap(), "user 1");
        assert!(Db.load(0).await.is_err());
    })
    .await;
    let h = handler(&docs)["id"].clone();
    for name in [
        "by_ref",
        "store.bump",
        "async_method",
        "by_value",
        "generic",
        "evens",
        "read_raw",
    ] {
        assert_eq!(by_name(&docs, name)["parent_id"], h, "{name}");
    }
    let loads: Vec<&Value> = docs.iter().filter(|d| d["name"] == "Db.load").collect();
    let queries: Vec<&Value> = docs.iter().filter(|d| d["name"] == "query").collect();
    assert_eq!((loads.len(), queries.len()), (2, 2));
    for (load, query) in loads.iter().zip(&queries) {
        assert_eq!(load["parent_id"], h);
        assert_eq!(
            query["parent_id"], load["id"],
            "the inner future is instrumented, not the boxing"
        );
    }
    assert_eq!(loads[1]["fault"], true);
    assert_eq!(
        loads[1]["cause"]["exceptions"][0]["message"],
        "no such user"
    );
    assert_eq!(loads[1]["cause"]["exceptions"][0]["type"], "io::Error");
}

// ---- Behaviour ----

#[capture]
async fn leaf(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[capture]
async fn branch() -> u64 {
    let (a, b) = tokio::join!(leaf(30), leaf(10));
    a + b
}

#[tokio::test]
async fn join_gives_siblings_and_nesting_follows_calls() {
    let docs = traced(3, || async {
        assert_eq!(branch().await, 40);
    })
    .await;
    let b = by_name(&docs, "branch");
    let leaves: Vec<&Value> = docs.iter().filter(|d| d["name"] == "leaf").collect();
    assert_eq!(leaves.len(), 2);
    assert!(leaves.iter().all(|l| l["parent_id"] == b["id"]));
    assert_eq!(b["parent_id"], handler(&docs)["id"]);
}

#[tokio::test]
async fn async_subsegments_open_at_first_poll_not_at_the_call() {
    let docs = traced(2, || async {
        let fut = leaf(1);
        begin_subsegment("between").end();
        fut.await;
    })
    .await;
    let (between, leaf) = (by_name(&docs, "between"), by_name(&docs, "leaf"));
    assert!(leaf["start_time"].as_f64().unwrap() >= between["end_time"].as_f64().unwrap());
    assert_eq!(leaf["parent_id"], handler(&docs)["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_captures_keep_their_parent_with_in_current_trace() {
    let docs = traced(2, || async {
        let outer = begin_subsegment("outer");
        let task = tokio::spawn(leaf(5).in_current_trace());
        assert_eq!(task.await.unwrap(), 5);
        let untraced = tokio::spawn(leaf(1));
        untraced.await.unwrap();
        outer.end();
    })
    .await;
    let leaves: Vec<&Value> = docs.iter().filter(|d| d["name"] == "leaf").collect();
    assert_eq!(
        leaves.len(),
        1,
        "a task spawned without in_current_trace records nothing"
    );
    assert_eq!(leaves[0]["parent_id"], by_name(&docs, "outer")["id"]);
}

#[capture]
fn explodes(reason: &str) -> u32 {
    panic!("exploded: {reason}");
}

#[tokio::test]
async fn panics_are_recorded_and_keep_unwinding() {
    let docs = traced(1, || async {
        let caught = std::panic::catch_unwind(|| explodes("bad input"));
        let payload = caught.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<String>().unwrap(),
            "exploded: bad input"
        );
    })
    .await;
    let e = by_name(&docs, "explodes");
    assert_eq!(e["fault"], true);
    let ex = &e["cause"]["exceptions"][0];
    assert_eq!(
        (ex["type"].as_str(), ex["message"].as_str()),
        (Some("panic"), Some("exploded: bad input"))
    );
    assert!(ex["stack"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("capture.rs"));
}

#[tokio::test]
async fn dropped_futures_are_ended_and_marked_cancelled() {
    let docs = traced(1, || async {
        let _ = tokio::time::timeout(Duration::from_millis(5), leaf(10_000)).await;
    })
    .await;
    let l = by_name(&docs, "leaf");
    assert_eq!(
        l["metadata"]["xray_lambda"]["incomplete"],
        "cancelled: future dropped before completion"
    );
}

#[derive(Debug, serde::Serialize)]
struct Order {
    id: u32,
    items: Vec<&'static str>,
}

#[capture(
    annotate(user, count, ratio, vip),
    metadata(order),
    response,
    error_kind = "error"
)]
fn place(user: &str, count: u32, ratio: f64, vip: bool, order: &Order) -> Result<Vec<u32>, String> {
    if count == 0 {
        return Err(format!("empty order for {user}"));
    }
    Ok(vec![order.id; count as usize])
}

#[tokio::test]
async fn options_annotate_metadata_response_and_error_kind() {
    let docs = traced(2, || async {
        let order = Order {
            id: 7,
            items: vec!["book"],
        };
        assert_eq!(place("u-1", 2, 0.5, true, &order).unwrap(), [7, 7]);
        assert!(place("u-2", 0, 0.0, false, &order).is_err());
    })
    .await;
    let places: Vec<&Value> = docs.iter().filter(|d| d["name"] == "place").collect();
    let (ok, failed) = (places[0], places[1]);
    assert_eq!(
        ok["annotations"],
        json!({"user": "u-1", "count": 2, "ratio": 0.5, "vip": true})
    );
    assert_eq!(
        ok["metadata"]["default"],
        json!({"order": {"id": 7, "items": ["book"]}, "response": [7, 7]})
    );
    assert!(ok.get("error").is_none() && ok.get("fault").is_none());
    assert_eq!(
        failed["error"], true,
        "error_kind = \"error\" marks a client error"
    );
    assert!(failed.get("fault").is_none());
    let ex = &failed["cause"]["exceptions"][0];
    assert_eq!(ex["message"], "empty order for u-2");
    assert!(failed["metadata"]["default"].get("response").is_none());
}

#[capture]
async fn boxed_error(fail: bool) -> Result<u32, lambda_runtime::Error> {
    if fail {
        Err(Box::new(KeyError("boxed")))
    } else {
        Ok(1)
    }
}

#[tokio::test]
async fn boxed_dyn_errors_keep_their_type() {
    let docs = traced(1, || async {
        assert!(boxed_error(true).await.is_err());
    })
    .await;
    let ex = &by_name(&docs, "boxed_error")["cause"]["exceptions"][0];
    assert_eq!(
        (ex["type"].as_str(), ex["message"].as_str()),
        (Some("KeyError"), Some("'boxed'"))
    );
}

// ---- Results and futures, however they are spelled ----

#[derive(Debug)]
struct ApiError(&'static str);
impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for ApiError {}

type ApiResult<T> = Result<T, ApiError>;

#[capture(response)]
fn aliased(fail: bool) -> ApiResult<u32> {
    if fail {
        Err(ApiError("aliased failure"))
    } else {
        Ok(7)
    }
}

#[capture]
async fn impl_ok(text: &str) -> Result<impl fmt::Debug, std::io::Error> {
    let n: u32 = text.parse().map_err(std::io::Error::other)?;
    Ok(n)
}

#[tokio::test]
async fn a_result_is_recognised_by_its_value_not_its_spelling() {
    let docs = traced(4, || async {
        assert_eq!(aliased(false).unwrap(), 7);
        assert!(aliased(true).is_err());
        assert_eq!(format!("{:?}", impl_ok("5").await.unwrap()), "5");
        assert!(impl_ok("x").await.is_err());
    })
    .await;
    let aliased: Vec<&Value> = docs.iter().filter(|d| d["name"] == "aliased").collect();
    assert_eq!(aliased[0]["metadata"]["default"]["response"], 7);
    assert!(aliased[0].get("fault").is_none());
    assert_eq!(aliased[1]["fault"], true);
    let ex = &aliased[1]["cause"]["exceptions"][0];
    assert_eq!(
        (ex["type"].as_str(), ex["message"].as_str()),
        (Some("ApiError"), Some("aliased failure"))
    );
    let impl_ok: Vec<&Value> = docs.iter().filter(|d| d["name"] == "impl_ok").collect();
    assert!(impl_ok[0].get("fault").is_none());
    assert_eq!(impl_ok[1]["fault"], true);
    assert_eq!(impl_ok[1]["cause"]["exceptions"][0]["type"], "io::Error");
}

/// A sync fn that returns the future doing its work: the subsegment lasts as long as
/// that future runs, and what it awaits is under it.
#[capture(annotate(ms))]
fn delayed(ms: u64) -> impl Future<Output = Result<u64, ApiError>> {
    async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        begin_subsegment("inside").end();
        if ms == 0 {
            return Err(ApiError("no delay"));
        }
        Ok(ms)
    }
}

#[tokio::test]
async fn a_returned_future_is_instrumented_not_its_construction() {
    let docs = traced(5, || async {
        let fut = delayed(30);
        begin_subsegment("between").end();
        assert_eq!(fut.await.unwrap(), 30);
        assert!(delayed(0).await.is_err());
    })
    .await;
    let delayed: Vec<&Value> = docs.iter().filter(|d| d["name"] == "delayed").collect();
    let (slow, failed) = (delayed[0], delayed[1]);
    let took = slow["end_time"].as_f64().unwrap() - slow["start_time"].as_f64().unwrap();
    assert!(took >= 0.030, "it lasts as long as the future runs: {took}");
    assert_eq!(slow["annotations"]["ms"], 30);
    assert!(
        slow["start_time"].as_f64() >= by_name(&docs, "between")["end_time"].as_f64(),
        "opened when the future first runs"
    );
    let inside: Vec<&Value> = docs.iter().filter(|d| d["name"] == "inside").collect();
    assert_eq!(inside[0]["parent_id"], slow["id"]);
    assert_eq!(slow["parent_id"], handler(&docs)["id"]);
    assert_eq!(failed["cause"]["exceptions"][0]["message"], "no delay");
}
