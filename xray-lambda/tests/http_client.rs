//! Outgoing HTTP requests, for real: invocations under `XRayLayer` make requests with a
//! `reqwest-middleware` client carrying `XRayMiddleware` and with hyper-util's client
//! under `XRayClientLayer`, to a server on loopback that records the headers it gets
//! and answers the status each path asks for; documents go to a UDP daemon and are
//! checked against the schema.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use lambda_runtime::tower::{Layer, Service, ServiceExt};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use support::{event, Collector};
use xray_lambda::http::{XRayClientLayer, XRayMiddleware};
use xray_lambda::XRayLayer;

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const FACADE: &str = "53995c3f42cd8ad8";

fn header(sampled: bool) -> String {
    format!(
        "Root={ROOT};Parent={FACADE};Sampled={};Lineage=a87bd80c:0",
        u8::from(sampled)
    )
}

/// Each request's path and headers.
type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

/// A loopback HTTP/1.1 server: `/ok` answers 200 with a 5-byte body, `/404`, `/429`,
/// `/503` those statuses, `/hang` never answers. It keeps every request's headers.
struct Server {
    addr: SocketAddr,
    seen: Seen,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || answer(stream, &log));
            }
        });
        Server { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The trace header of each request to `path` (a missing one as `None`).
    fn trace_headers(&self, path: &str) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.get("x-amzn-trace-id").cloned())
            .collect()
    }
}

fn answer(stream: TcpStream, log: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    log.lock().unwrap().push((path.clone(), headers));
    let (status, body) = match path.as_str() {
        "/hang" => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        "/404" => ("404 Not Found", ""),
        "/429" => ("429 Too Many Requests", ""),
        "/503" => ("503 Service Unavailable", ""),
        _ => ("200 OK", "hello"),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `work` as the handler of one invocation under `header`, sending to `daemon`.
fn invoke<F, Fut>(rt: &tokio::runtime::Runtime, daemon: &Collector, header: Option<&str>, work: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let svc = XRayLayer::new()
        .daemon_address(&daemon.address)
        .enabled(true)
        .layer(service_fn(move |_: LambdaEvent<()>| {
            let fut = work();
            async move {
                fut.await;
                Ok::<(), lambda_runtime::Error>(())
            }
        }));
    rt.block_on(svc.oneshot(event((), header))).unwrap();
}

fn reqwest_client() -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(XRayMiddleware::new().ignore_host("LOCALHOST"))
        .build()
}

fn by_url<'a>(docs: &'a [Value], url: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["http"]["request"]["url"] == url)
        .unwrap_or_else(|| panic!("no request to {url} in {docs:#?}"))
}

fn parent_of(trace_header: &str) -> &str {
    trace_header
        .split(';')
        .find_map(|f| f.strip_prefix("Parent="))
        .unwrap()
}

/// What each test starts: a daemon, the server, a runtime, and a URL nobody answers.
fn setup() -> (Collector, Arc<Server>, tokio::runtime::Runtime, String) {
    let refused = format!("http://127.0.0.1:{}/refused", closed_port());
    (
        Collector::start(),
        Arc::new(Server::start()),
        runtime(),
        refused,
    )
}

#[test]
fn reqwest_requests_are_subsegments_with_their_outcome_and_header() {
    let (daemon, server, rt, refused) = setup();
    let (s, refused_url) = (server.clone(), refused.clone());
    invoke(&rt, &daemon, Some(&header(true)), move || {
        let (s, refused) = (s.clone(), refused_url.clone());
        async move {
            let client = reqwest_client();
            let get = |path: &str| client.get(s.url(path));
            // A header already there is replaced.
            let ok = get("/ok?token=secret#frag")
                .header(
                    "X-Amzn-Trace-Id",
                    "Root=1-00000000-000000000000000000000000",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(ok.status(), 200);
            assert_eq!(
                ok.text().await.unwrap(),
                "hello",
                "the body reaches the caller"
            );
            for path in ["/404", "/429", "/503"] {
                let status = get(path).send().await.unwrap().status().as_u16();
                assert_eq!(path, format!("/{status}"), "the status reaches the caller");
            }
            let err = client.get(&refused).send().await.unwrap_err();
            assert!(err.is_request(), "the caller gets reqwest's error: {err:?}");
            // reqwest's error names the URL: its query string must not reach the cause.
            let err = get("/hang?token=secret")
                .timeout(Duration::from_millis(300))
                .send()
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("timed out") || format!("{err:?}").contains("TimedOut"),
                "{err:?}"
            );
            let ignored = format!("http://localhost:{}/ignored", s.addr.port());
            client.get(&ignored).send().await.unwrap();
            // Two at once: each its own subsegment, each header naming its own.
            let (a, b) = tokio::join!(get("/ok").send(), get("/ok").send());
            assert!(a.is_ok() && b.is_ok());
        }
    });

    let docs = daemon.trace(ROOT);
    let url = |path: &str| server.url(path);
    let ok = by_url(&docs, &url("/ok"));
    assert_eq!(ok["name"], "127.0.0.1");
    assert_eq!(ok["namespace"], "remote");
    assert_eq!(ok["http"]["request"]["method"], "GET");
    assert_eq!(ok["http"]["response"]["status"], 200);
    assert_eq!(ok["http"]["response"]["content_length"], 5);
    assert!(ok.get("error").is_none() && ok.get("fault").is_none());
    let flags = |path: &str| {
        let d = by_url(&docs, &url(path));
        (
            d["error"].as_bool().unwrap_or(false),
            d["throttle"].as_bool().unwrap_or(false),
            d["fault"].as_bool().unwrap_or(false),
        )
    };
    assert_eq!(flags("/404"), (true, false, false));
    assert_eq!(flags("/429"), (true, true, false));
    assert_eq!(flags("/503"), (false, false, true));
    for failed in [by_url(&docs, &refused), by_url(&docs, &url("/hang"))] {
        assert_eq!(failed["fault"], true, "{failed}");
        let exceptions = failed["cause"]["exceptions"].as_array().unwrap();
        assert!(exceptions.len() > 1, "the error's chain: {exceptions:#?}");
        assert!(exceptions.iter().all(|e| e["remote"] == true));
        assert_eq!(exceptions[0]["type"], "reqwest::Error");
        assert!(failed.get("http").unwrap().get("response").is_none());
    }
    let chain = by_url(&docs, &refused)["cause"].to_string();
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
    assert!(
        !docs.iter().any(|d| d.to_string().contains("secret")),
        "no query string recorded"
    );
    assert!(docs.iter().all(|d| d["http"]["request"]["url"]
        != format!("http://localhost:{}/ignored", server.addr.port())));

    // What the server saw: our header, naming each request's own subsegment.
    let handler = docs.iter().find(|d| d["parent_id"] == FACADE).unwrap();
    let oks: Vec<&Value> = docs
        .iter()
        .filter(|d| d["http"]["request"]["url"] == url("/ok"))
        .collect();
    assert_eq!(oks.len(), 3);
    let seen = server.trace_headers("/ok");
    assert_eq!(seen.len(), 3);
    for h in &seen {
        let h = h.as_deref().unwrap();
        assert!(h.starts_with(&format!("Root={ROOT};Parent=")), "{h}");
        assert!(h.ends_with(";Sampled=1;Lineage=a87bd80c:0"), "{h}");
        let parent = parent_of(h);
        let doc = oks.iter().find(|d| d["id"] == parent).unwrap();
        assert_eq!(doc["parent_id"], handler["id"]);
    }
    assert_eq!(
        server.trace_headers("/ignored"),
        [None],
        "an ignored host is left alone"
    );
}

#[test]
fn unsampled_and_untraced_requests_send_no_documents() {
    let (daemon, server, rt, _) = setup();
    for (path, header) in [("/unsampled", Some(header(false))), ("/untraced", None)] {
        let s = server.clone();
        invoke(&rt, &daemon, header.as_deref(), move || {
            let s = s.clone();
            async move {
                reqwest_client()
                    .get(s.url(path))
                    .header("X-Amzn-Trace-Id", "Root=kept")
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    assert_eq!(daemon.all(), Vec::<Value>::new());
    assert_eq!(
        server.trace_headers("/unsampled"),
        [Some(format!(
            "Root={ROOT};Parent={FACADE};Sampled=0;Lineage=a87bd80c:0"
        ))]
    );
    assert_eq!(
        server.trace_headers("/untraced"),
        [Some("Root=kept".to_owned())],
        "without a trace the request is untouched"
    );
}

#[test]
fn a_tower_client_records_the_same_way() {
    let (daemon, server, rt, refused) = setup();
    let (s, refused_url) = (server.clone(), refused.clone());
    invoke(&rt, &daemon, Some(&header(true)), move || {
        let (s, refused) = (s.clone(), refused_url.clone());
        async move {
            let mut client = lambda_runtime::tower::ServiceBuilder::new()
                .layer(XRayClientLayer::new().record_query())
                .service(
                    HyperClient::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>(),
                );
            for (url, ok) in [
                (s.url("/ok?page=2"), true),
                (s.url("/503"), true),
                (refused, false),
            ] {
                let request = http::Request::get(url).body(Empty::new()).unwrap();
                let result = client.ready().await.unwrap().call(request).await;
                assert_eq!(result.is_ok(), ok);
            }
        }
    });
    let docs = daemon.trace(ROOT);
    let ok = by_url(&docs, &server.url("/ok?page=2"));
    assert_eq!(
        ok["http"]["response"],
        serde_json::json!({"status": 200, "content_length": 5})
    );
    assert_eq!(by_url(&docs, &server.url("/503"))["fault"], true);
    let failed = by_url(&docs, &refused);
    assert_eq!(failed["fault"], true);
    assert!(failed["cause"]["exceptions"][0]["remote"] == true);
    let seen = server.trace_headers("/ok");
    assert_eq!(parent_of(seen[0].as_deref().unwrap()), ok["id"]);
}
