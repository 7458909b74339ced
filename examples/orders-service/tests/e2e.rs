//! The example service under real HTTP load on loopback, with moto_server as DynamoDB
//! and the harness's UDP daemon (every document validated against the schema): the
//! sampling it does by X-Ray's default rule, by a rules file and by the console's
//! rules through the daemon's sampling API; the headers it obeys and answers with;
//! and the segments it sends.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use serde_json::{json, Value};
use xray_lambda_e2e::harness::{self, Daemon, Moto, Process, SamplingApi};

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const CALLER: &str = "53995c3f42cd8ad8";
const TABLE: &str = "orders";

/// The service, listening on a free loopback port.
struct Service {
    base: String,
    process: Process,
    client: reqwest::Client,
}

/// Starts the example against `moto`, sending to the daemon at `daemon_address`
/// (`AWS_XRAY_DAEMON_ADDRESS`), sampling by the rules file `rules` if given.
fn start(moto: &Moto, daemon_address: &str, rules: Option<&Path>) -> Service {
    let port = harness::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_orders-service"));
    command
        .env("ORDERS_ADDR", format!("127.0.0.1:{port}"))
        .env("TABLE_NAME", TABLE)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_XRAY_DAEMON_ADDRESS", daemon_address)
        .env_remove("AWS_LAMBDA_FUNCTION_NAME")
        .env_remove("LAMBDA_TASK_ROOT")
        .env_remove("ECS_CONTAINER_METADATA_URI_V4")
        .env_remove("AWS_XRAY_TRACING_NAME");
    match rules {
        Some(path) => command.env("XRAY_LAMBDA_SAMPLING_RULES", path),
        None => command.env_remove("XRAY_LAMBDA_SAMPLING_RULES"),
    };
    let process = harness::start_server(&mut command, port);
    Service {
        base: format!("http://127.0.0.1:{port}"),
        process,
        client: reqwest::Client::new(),
    }
}

impl Service {
    /// Sends a request, with `trace` as `X-Amzn-Trace-Id`; gives the status and the
    /// `X-Amzn-Trace-Id` of the response.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &str,
        trace: Option<&str>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.client.post(url).body(body.to_owned()),
            _ => self.client.get(url),
        };
        if let Some(t) = trace {
            request = request.header("x-amzn-trace-id", t);
        }
        let response = request.send().await.unwrap();
        let header = response.headers()["x-amzn-trace-id"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.status().as_u16(), header)
    }

    /// Sends `n` requests, `concurrency` at a time; gives each response's header, and
    /// the wall-clock seconds they spanned.
    async fn load(
        self: &Arc<Self>,
        n: usize,
        concurrency: usize,
        method: &'static str,
        path: &'static str,
    ) -> (Vec<String>, u64) {
        let start = epoch_seconds();
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut headers = Vec::new();
                for i in (worker..n).step_by(concurrency) {
                    let body = order(&format!("customer-{i}"));
                    headers.push(me.send(method, path, &body, None).await.1);
                }
                headers
            }));
        }
        let mut headers = Vec::new();
        for t in tasks {
            headers.extend(t.await.unwrap());
        }
        (headers, epoch_seconds() - start + 1)
    }
}

fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn order(customer: &str) -> String {
    json!({ "customerId": customer, "items": ["book"] }).to_string()
}

async fn moto_with_table() -> Moto {
    let moto = Moto::start();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&moto.endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    harness::create_table(
        &aws_sdk_dynamodb::Client::from_conf(config),
        TABLE,
        "orderId",
    )
    .await;
    moto
}

fn rules_file() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sampling-rules.json"))
}

fn sampled(headers: &[String]) -> usize {
    for h in headers {
        assert!(
            h.starts_with("Root=1-") && (h.ends_with(";Sampled=1") || h.ends_with(";Sampled=0")),
            "response header {h}"
        );
    }
    headers.iter().filter(|h| h.ends_with(";Sampled=1")).count()
}

/// Every subsegment under `doc`, at any depth.
fn descendants(doc: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for s in doc["subsegments"].as_array().into_iter().flatten() {
        out.push(s);
        out.extend(descendants(s));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_rule_samples_one_a_second_then_five_percent_under_load() {
    let moto = moto_with_table().await;
    let daemon = Daemon::start();
    // The daemon's address serves UDP only: the sampling API does not answer, and the
    // default rule decides.
    let service = Arc::new(start(&moto, &daemon.addr.to_string(), None));
    let started = Instant::now();
    let (headers, seconds) = service.load(1_000, 8, "GET", "/health").await;
    let took = started.elapsed();
    let n = sampled(&headers);
    // The reservoir gives up to one a second; 5% of the rest is binomial (sd ≈ 7):
    // allow five standard deviations either way.
    let rest = 1_000.0 - seconds as f64;
    let (low, high) = (0.05 * rest - 35.0, 0.05 * rest + 35.0 + seconds as f64);
    assert!(
        (low..=high).contains(&(n as f64)),
        "{n} of 1,000 sampled over {seconds} s ({took:?}), expected {low}..={high}"
    );
    let datagrams = daemon.wait_for_datagrams(n);
    assert_eq!(
        datagrams.len(),
        n,
        "one segment per sampled request, nothing else"
    );
    for (_, segment) in &datagrams {
        assert_eq!(segment["name"], "orders");
        assert_eq!(
            segment["http"]["request"]["url"],
            format!("{}/health", service.base)
        );
        assert_eq!(segment["http"]["request"]["client_ip"], "127.0.0.1");
        assert_eq!(segment["http"]["response"]["status"], 200);
        assert!(segment.get("parent_id").is_none());
        assert!(headers.contains(&format!(
            "Root={};Sampled=1",
            segment["trace_id"].as_str().unwrap()
        )));
    }
    let warnings = service.process.log_lines("did not answer GetSamplingRules");
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the unreachable daemon: {warnings:#?}"
    );
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rules_file_samples_every_order_and_incoming_headers_are_obeyed() {
    let moto = moto_with_table().await;
    let daemon = Daemon::start();
    let service = Arc::new(start(&moto, &daemon.addr.to_string(), Some(rules_file())));

    let (headers, _) = service.load(40, 8, "POST", "/orders").await;
    assert_eq!(sampled(&headers), 40, "POST /orders is sampled at rate 1.0");
    let (headers, _) = service.load(200, 8, "GET", "/health").await;
    assert_eq!(sampled(&headers), 0, "GET /health at rate 0");
    let datagrams = daemon.wait_for_datagrams(40);
    assert_eq!(datagrams.len(), 40, "one datagram per request");
    // Concurrent requests do not cross: each segment holds its own request's work.
    let mut customers = Vec::new();
    for (_, segment) in &datagrams {
        assert_eq!(segment["http"]["response"]["status"], 201);
        let under = descendants(segment);
        let names: Vec<&str> = under.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["validate_order", "save_order", "DynamoDB"],
            "{segment:#}"
        );
        assert_eq!(under[2]["aws"]["operation"], "PutItem");
        customers.push(
            under[0]["annotations"]["customer_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    customers.sort();
    customers.dedup();
    assert_eq!(
        customers.len(),
        40,
        "each request's annotation in its own segment"
    );
    let left_out = service.process.log_lines("Server errors");
    assert_eq!(
        left_out.len(),
        1,
        "the rule on http.status is named at load: {left_out:#?}"
    );
    daemon.clear();

    // A sampled caller: its trace continues, under its segment, whatever the rules say.
    let header = format!("Root={ROOT};Parent={CALLER};Sampled=1");
    let (status, answer) = service.send("GET", "/health", "", Some(&header)).await;
    assert_eq!(
        (status, answer.as_str()),
        (200, format!("Root={ROOT};Sampled=1").as_str())
    );
    // An unsampled caller: nothing recorded, even for an order.
    let header = format!("Root={ROOT};Parent={CALLER};Sampled=0");
    let (status, answer) = service
        .send("POST", "/orders", &order("c"), Some(&header))
        .await;
    assert_eq!(
        (status, answer.as_str()),
        (201, format!("Root={ROOT};Sampled=0").as_str())
    );
    // A refused order is a client error on its segment.
    let (status, _) = service.send("POST", "/orders", &order(""), None).await;
    assert_eq!(status, 400);
    let datagrams = daemon.wait_for_datagrams(2);
    assert_eq!(datagrams.len(), 2);
    let continued = &datagrams
        .iter()
        .find(|(_, d)| d["trace_id"] == ROOT)
        .unwrap()
        .1;
    assert_eq!(continued["parent_id"], CALLER);
    let refused = &datagrams
        .iter()
        .find(|(_, d)| d["trace_id"] != ROOT)
        .unwrap()
        .1;
    assert_eq!(
        (&refused["error"], &refused["http"]["response"]["status"]),
        (&json!(true), &json!(400))
    );
    let validate = descendants(refused)[0];
    assert_eq!(
        validate["error"], true,
        "validate_order recorded the refusal"
    );
    assert_eq!(
        validate["cause"]["exceptions"][0]["message"],
        "customerId is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_consoles_rules_through_the_daemon_decide_by_their_quota_and_get_statistics() {
    let moto = moto_with_table().await;
    let daemon = Daemon::start();
    let rule = |name: &str, priority: u32, method: &str, path: &str| {
        json!({"SamplingRule": {
            "RuleName": name, "ResourceARN": "*", "Priority": priority, "FixedRate": 0.0,
            "ReservoirSize": 5, "ServiceName": "orders", "ServiceType": "*", "Host": "*",
            "HTTPMethod": method, "URLPath": path, "Version": 1, "Attributes": {}
        }})
    };
    let ttl = epoch_seconds() + 600;
    let api = SamplingApi::start(
        json!({"SamplingRuleRecords": [
            rule("Default", 10000, "*", "*"),
            rule("health", 1, "GET", "/health"),
        ]}),
        json!({"SamplingTargetDocuments": [
            {"RuleName": "health", "FixedRate": 0.0, "ReservoirQuota": 5,
             "ReservoirQuotaTTL": ttl, "Interval": 1},
            {"RuleName": "Default", "FixedRate": 0.0, "ReservoirQuota": 0,
             "ReservoirQuotaTTL": ttl, "Interval": 1}
        ], "LastRuleModification": 1.0}),
    );
    // The local rules would sample every order: the console's rules win.
    let service = Arc::new(start(
        &moto,
        &format!("tcp:{} udp:{}", api.addr, daemon.addr),
        Some(rules_file()),
    ));
    // One poller makes the calls in turn: once the second has come, the first answer's
    // quotas are in use.
    api.wait_for("/SamplingTargets", 2);

    let (headers, seconds) = service.load(60, 1, "GET", "/health").await;
    let n = sampled(&headers);
    assert!(
        (5..=5 * seconds as usize).contains(&n),
        "{n} sampled in {seconds} s with a quota of 5 a second and rate 0"
    );
    let (orders, _) = service.load(10, 2, "POST", "/orders").await;
    assert_eq!(
        sampled(&orders),
        0,
        "the Default rule's quota is 0 and its rate 0"
    );
    assert_eq!(daemon.wait_for_datagrams(n).len(), n);

    // Statistics: every request counted against its rule, reported within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut totals = std::collections::HashMap::<String, (u64, u64)>::new();
        for call in api.calls("/SamplingTargets") {
            for d in call["SamplingStatisticsDocuments"].as_array().unwrap() {
                assert_eq!(d["ClientID"].as_str().unwrap().len(), 24);
                let t = totals
                    .entry(d["RuleName"].as_str().unwrap().to_owned())
                    .or_default();
                t.0 += d["RequestCount"].as_u64().unwrap();
                t.1 += d["SampledCount"].as_u64().unwrap();
            }
        }
        if totals.get("health") == Some(&(60, n as u64)) && totals.get("Default") == Some(&(10, 0))
        {
            break;
        }
        assert!(Instant::now() < deadline, "statistics reported: {totals:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!api.calls("/GetSamplingRules").is_empty());
    assert!(service.process.log_lines("did not answer").is_empty());
}
