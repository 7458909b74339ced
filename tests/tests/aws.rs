//! `XRayInterceptor` against real DynamoDB and S3 (`moto_server`), in-process under
//! `XRayLayer`, with small loopback proxies for what moto cannot do (throttling, 500s)
//! and to see the trace header each request carries. Every document is validated
//! against the schema by the harness daemon.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_smithy_types_retry::RetryConfig;
use serde_json::{json, Value};
use xray_lambda::aws::XRayInterceptor;
use xray_lambda::begin_subsegment;
use xray_lambda_e2e::harness::{
    self, by_name, fixture, run_invocation as invoke, silent_endpoint, Canned, Moto, Proxy,
};

use aws_sdk_dynamodb::config::retry as aws_smithy_types_retry;

const FACADE: &str = "53995c3f42cd8ad8";
const LINEAGE: &str = "Lineage=a87bd80c:0";
const TABLE: &str = "users-table";
const BUCKET: &str = "user-files";

fn retry() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(5))
}

fn dynamodb(endpoint: &str, traced: bool) -> aws_sdk_dynamodb::Client {
    let mut b = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .retry_config(retry())
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    if traced {
        b = b.interceptor(XRayInterceptor::new());
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

fn s3(endpoint: &str, traced: bool) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    if traced {
        b = b.interceptor(XRayInterceptor::new());
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

async fn create_table_and_bucket(moto: &Moto) {
    let (ddb, s3c) = (dynamodb(&moto.endpoint, false), s3(&moto.endpoint, false));
    harness::create_table_and_bucket(&ddb, &s3c, TABLE, BUCKET).await;
}

fn sampled(root: &xray_lambda::TraceId) -> String {
    format!("Root={root};Parent={FACADE};Sampled=1;{LINEAGE}")
}

fn aws_docs<'a>(docs: &'a [Value], operation: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["aws"]["operation"] == operation)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_and_s3_calls_become_subsegments() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let (ddb, s3c) = (dynamodb(&moto.endpoint, true), s3(&moto.endpoint, true));
    let root = xray_lambda::TraceId::new();
    let docs = invoke(&sampled(&root), 9, move || {
        let (ddb, s3c) = (ddb.clone(), s3c.clone());
        async move {
            let save = begin_subsegment("save_user");
            let item = |id: &str| {
                [
                    ("userId".to_owned(), AttributeValue::S(id.into())),
                    ("name".to_owned(), AttributeValue::S("Ann".into())),
                ]
                .into()
            };
            ddb.put_item()
                .table_name(TABLE)
                .set_item(Some(item("u-1")))
                .send()
                .await
                .unwrap();
            ddb.get_item()
                .table_name(TABLE)
                .key("userId", AttributeValue::S("u-1".into()))
                .send()
                .await
                .unwrap();
            ddb.query()
                .table_name(TABLE)
                .key_condition_expression("userId = :u")
                .expression_attribute_values(":u", AttributeValue::S("u-1".into()))
                .limit(5)
                .send()
                .await
                .unwrap();
            let put = |id: &str| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item(id)))
                            .build()
                            .unwrap(),
                    )
                    .build()
            };
            ddb.batch_write_item()
                .request_items(TABLE, vec![put("u-2"), put("u-3")])
                .send()
                .await
                .unwrap();
            drop(save);
            s3c.put_object()
                .bucket(BUCKET)
                .key("users/u-1/info.txt")
                .body("Ann".as_bytes().to_vec().into())
                .send()
                .await
                .unwrap();
            let got = s3c
                .get_object()
                .bucket(BUCKET)
                .key("users/u-1/info.txt")
                .send()
                .await
                .unwrap();
            assert_eq!(
                got.body.collect().await.unwrap().into_bytes().as_ref(),
                b"Ann"
            );
            s3c.list_objects_v2()
                .bucket(BUCKET)
                .prefix("users/")
                .send()
                .await
                .unwrap();
        }
    })
    .await;

    let handler = docs
        .iter()
        .find(|d| d["name"].as_str().unwrap().starts_with("## "))
        .unwrap();
    let save = by_name(&docs, "save_user");
    for d in docs.iter().filter(|d| d.get("aws").is_some()) {
        assert_eq!(d["namespace"], "aws");
        assert_eq!(d["trace_id"], root.to_string());
        assert_eq!(d["aws"]["region"], "us-east-1");
        assert_eq!(d["aws"]["retries"], 0);
        assert!(
            d["aws"]["request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{d}"
        );
        assert_eq!(d["http"]["response"]["status"], 200);
        assert!(d.get("error").is_none() && d.get("fault").is_none());
        let expected_parent = if d["name"] == "DynamoDB" {
            &save["id"]
        } else {
            &handler["id"]
        };
        assert_eq!(
            &d["parent_id"], expected_parent,
            "the current subsegment of the calling code"
        );
    }
    let put = aws_docs(&docs, "PutItem")[0];
    assert_eq!(put["name"], "DynamoDB");
    assert_eq!(put["aws"]["table_name"], TABLE);
    assert_eq!(aws_docs(&docs, "GetItem")[0]["aws"]["table_name"], TABLE);
    let query = aws_docs(&docs, "Query")[0];
    assert_eq!(
        (&query["aws"]["table_name"], &query["aws"]["limit"]),
        (&json!(TABLE), &json!(5))
    );
    assert_eq!(
        aws_docs(&docs, "BatchWriteItem")[0]["aws"]["table_names"],
        json!([TABLE])
    );
    let put_object = aws_docs(&docs, "PutObject")[0];
    assert_eq!(put_object["name"], "S3");
    assert_eq!(
        (&put_object["aws"]["bucket_name"], &put_object["aws"]["key"]),
        (&json!(BUCKET), &json!("users/u-1/info.txt"))
    );
    let get_object = aws_docs(&docs, "GetObject")[0];
    assert_eq!(get_object["aws"]["key"], "users/u-1/info.txt");
    assert_eq!(get_object["http"]["response"]["content_length"], 3);
    let list = aws_docs(&docs, "ListObjectsV2")[0];
    assert_eq!(
        (&list["aws"]["bucket_name"], &list["aws"]["prefix"]),
        (&json!(BUCKET), &json!("users/"))
    );

    // Field by field against the Python SDK's 07 (PutItem) and 08 (PutObject); the name
    // is the service id (`DynamoDB`, `S3`) rather than the endpoint prefix, on purpose.
    for (ours, reference) in [(put, fixture("07.json")), (put_object, fixture("08.json"))] {
        assert_eq!(
            ours["name"].as_str().unwrap().to_lowercase(),
            reference["name"]
        );
        assert_eq!(ours["namespace"], reference["namespace"]);
        assert_eq!(
            ours["http"]["response"]["status"],
            reference["http"]["response"]["status"]
        );
        // The same table and bucket names as the reference scenario; the S3 key differs
        // (the seed app writes users/{id}/info.txt), so only its presence is compared.
        for field in ["operation", "region", "table_name", "bucket_name"] {
            assert_eq!(ours["aws"][field], reference["aws"][field], "{field}");
        }
        assert_eq!(
            ours["aws"].get("key").is_some(),
            reference["aws"].get("key").is_some()
        );
    }
}

#[tokio::test]
async fn a_missing_table_and_a_missing_key_are_client_errors() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let (ddb, s3c) = (dynamodb(&moto.endpoint, true), s3(&moto.endpoint, true));
    let docs = invoke(&sampled(&xray_lambda::TraceId::new()), 4, move || {
        let (ddb, s3c) = (ddb.clone(), s3c.clone());
        async move {
            let err = ddb
                .put_item()
                .table_name("missing-table")
                .item("userId", AttributeValue::S("u".into()))
                .send()
                .await
                .unwrap_err();
            assert!(format!("{err:?}").contains("ResourceNotFoundException"));
            assert!(s3c
                .get_object()
                .bucket(BUCKET)
                .key("does/not/exist.txt")
                .send()
                .await
                .is_err());
            // A HEAD answer has no body to read the error from.
            assert!(s3c
                .head_object()
                .bucket(BUCKET)
                .key("does/not/exist.txt")
                .send()
                .await
                .is_err());
        }
    })
    .await;
    let head = aws_docs(&docs, "HeadObject")[0];
    assert_eq!(head["error"], true);
    assert!(head.get("fault").is_none());
    let ex = &head["cause"]["exceptions"][0];
    assert_eq!(
        (&ex["type"], &ex["message"]),
        (&json!("NotFound"), &json!("Not Found")),
        "the code the SDK gives, and the status's reason: {head:#}"
    );
    for (op, status, code, reference) in [
        (
            "PutItem",
            400,
            "ResourceNotFoundException",
            fixture("10.json"),
        ),
        ("GetObject", 404, "NoSuchKey", fixture("09.json")),
    ] {
        let d = aws_docs(&docs, op)[0];
        assert_eq!(d["http"]["response"]["status"], status);
        assert_eq!(
            d["http"]["response"]["status"],
            reference["http"]["response"]["status"]
        );
        assert_eq!(d["error"], true, "{op}: a 4xx is a client error");
        assert!(
            d.get("fault").is_none(),
            "{op}: not a fault (the Python SDK sets both)"
        );
        assert_eq!(reference["fault"], true);
        let ex = &d["cause"]["exceptions"][0];
        assert_eq!(ex["type"], code);
        assert_eq!(ex["type"], reference["cause"]["exceptions"][0]["type"]);
        assert_eq!(ex["remote"], true);
        assert!(!ex["message"].as_str().unwrap().is_empty());
        assert!(
            reference["cause"]["exceptions"][0]["message"]
                .as_str()
                .unwrap()
                .contains(ex["message"].as_str().unwrap()),
            "{op}: {}",
            ex["message"]
        );
    }
}

fn throttling_json() -> Canned {
    Canned {
        status: 400,
        content_type: "application/x-amz-json-1.0",
        body: r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}"#.into(),
    }
}

#[tokio::test]
async fn throttling_retries_are_counted_and_a_final_throttle_is_flagged() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let recovers = Proxy::start(moto.addr, vec![throttling_json(), throttling_json()], false);
    let stays = Proxy::start(moto.addr, vec![throttling_json()], true);
    let slow_down = Proxy::start(
        moto.addr,
        vec![Canned {
            status: 503,
            content_type: "application/xml",
            body: "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".into(),
        }],
        true,
    );
    let clients = (
        dynamodb(&recovers.endpoint, true),
        dynamodb(&stays.endpoint, true),
        s3(&slow_down.endpoint, true),
    );
    let docs = invoke(&sampled(&xray_lambda::TraceId::new()), 4, move || {
        let (a, b, c) = clients.clone();
        async move {
            a.get_item()
                .table_name(TABLE)
                .key("userId", AttributeValue::S("u".into()))
                .send()
                .await
                .unwrap();
            assert!(b
                .get_item()
                .table_name(TABLE)
                .key("userId", AttributeValue::S("u".into()))
                .send()
                .await
                .is_err());
            assert!(c
                .put_object()
                .bucket(BUCKET)
                .key("k")
                .body(b"x".to_vec().into())
                .send()
                .await
                .is_err());
        }
    })
    .await;
    let gets = aws_docs(&docs, "GetItem");
    let (ok, throttled) = (gets[0], gets[1]);
    assert_eq!(
        ok["aws"]["retries"], 2,
        "one subsegment per operation, attempts counted"
    );
    assert_eq!(ok["http"]["response"]["status"], 200);
    assert!(ok.get("throttle").is_none() && ok.get("error").is_none());
    assert_eq!(throttled["aws"]["retries"], 2);
    assert_eq!(
        (&throttled["throttle"], &throttled["error"]),
        (&json!(true), &json!(true))
    );
    assert!(throttled.get("fault").is_none());
    assert_eq!(
        throttled["cause"]["exceptions"][0]["type"],
        "ThrottlingException"
    );
    assert_eq!(
        throttled["cause"]["exceptions"][0]["message"],
        "Rate exceeded"
    );
    let slow = aws_docs(&docs, "PutObject")[0];
    assert_eq!(
        (&slow["throttle"], &slow["error"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(slow["cause"]["exceptions"][0]["type"], "SlowDown");
    assert_eq!(slow["http"]["response"]["status"], 503);
    assert_eq!(
        slow["aws"]["id_2"], "canned-id-2",
        "S3's extended request id"
    );
}

#[tokio::test]
async fn server_errors_and_refused_connections_are_faults() {
    let moto = Moto::start();
    let failing = Proxy::start(
        moto.addr,
        vec![Canned {
            status: 500,
            content_type: "application/x-amz-json-1.0",
            body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#.into(),
        }],
        true,
    );
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let hanging = dynamodb(&silent_endpoint(), true)
        .config()
        .to_builder()
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    let clients = (
        dynamodb(&failing.endpoint, true),
        dynamodb(&refused, true),
        aws_sdk_dynamodb::Client::from_conf(hanging),
    );
    let docs = invoke(&sampled(&xray_lambda::TraceId::new()), 5, move || {
        let (a, b, c) = clients.clone();
        async move {
            let get = |client: aws_sdk_dynamodb::Client| async move {
                client
                    .get_item()
                    .table_name(TABLE)
                    .key("userId", AttributeValue::S("u".into()))
                    .send()
                    .await
            };
            assert!(get(a).await.is_err());
            assert!(get(b).await.is_err());
            assert!(c.describe_table().table_name(TABLE).send().await.is_err());
            // A call whose future is dropped is still sent, marked.
            let hung = dynamodb(&silent_endpoint(), true);
            let call = hung.list_tables().send();
            assert!(tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err());
        }
    })
    .await;
    let dropped = aws_docs(&docs, "ListTables")[0];
    assert_eq!(
        dropped["metadata"]["xray_lambda"]["incomplete"],
        "abandoned: dropped without being ended"
    );
    let timed_out = aws_docs(&docs, "DescribeTable")[0];
    assert_eq!(timed_out["fault"], true);
    assert_eq!(
        timed_out["cause"]["exceptions"][0]["type"], "TimeoutError",
        "{timed_out}"
    );
    assert_eq!(timed_out["aws"]["table_name"], TABLE);
    let gets = aws_docs(&docs, "GetItem");
    let server = gets.iter().find(|d| d.get("http").is_some()).unwrap();
    assert_eq!(server["fault"], true);
    assert!(server.get("error").is_none());
    assert_eq!(server["http"]["response"]["status"], 500);
    assert_eq!(
        server["cause"]["exceptions"][0]["type"],
        "InternalServerError"
    );
    assert_eq!(server["aws"]["retries"], 2);
    let no_answer = gets.iter().find(|d| d.get("http").is_none()).unwrap();
    assert_eq!(no_answer["fault"], true);
    let ex = &no_answer["cause"]["exceptions"][0];
    assert_eq!(ex["type"], "ConnectionError", "{no_answer}");
    assert!(!ex["message"].as_str().unwrap().is_empty());
    assert_eq!(ex["remote"], false);
}

#[tokio::test]
async fn the_trace_header_is_propagated_with_lineage() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let proxy = Proxy::start(moto.addr, Vec::new(), false);
    let ddb = dynamodb(&proxy.endpoint, true);
    let get = move |ddb: aws_sdk_dynamodb::Client| async move {
        ddb.get_item()
            .table_name(TABLE)
            .key("userId", AttributeValue::S("u".into()))
            .send()
            .await
            .unwrap();
    };

    let root = xray_lambda::TraceId::new();
    let c = ddb.clone();
    let docs = invoke(&sampled(&root), 1, move || get(c.clone())).await;
    let call = aws_docs(&docs, "GetItem")[0];
    let sent = proxy.trace_headers();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].as_deref(),
        Some(
            format!(
                "Root={root};Parent={};Sampled=1;{LINEAGE}",
                call["id"].as_str().unwrap()
            )
            .as_str()
        )
    );

    // Unsampled: nothing recorded, the header still goes out under the function segment.
    let c = ddb.clone();
    let docs = invoke(
        &format!("Root={root};Parent={FACADE};Sampled=0;{LINEAGE}"),
        0,
        move || get(c.clone()),
    )
    .await;
    assert!(docs.is_empty());
    assert_eq!(
        proxy.trace_headers()[1].as_deref(),
        Some(format!("Root={root};Parent={FACADE};Sampled=0;{LINEAGE}").as_str())
    );

    // No trace: the SDK's own behaviour (no header, as _X_AMZN_TRACE_ID is unset here).
    assert!(std::env::var_os("_X_AMZN_TRACE_ID").is_none());
    get(ddb.clone()).await;
    assert_eq!(proxy.trace_headers()[2], None);
}

/// With no usable daemon address nothing is recorded, but the AWS calls still carry the
/// trace on, under the function segment.
#[tokio::test]
async fn without_a_daemon_the_trace_header_still_reaches_aws() {
    use lambda_runtime::tower::{Layer, Service};
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let proxy = Proxy::start(moto.addr, Vec::new(), false);
    let ddb = dynamodb(&proxy.endpoint, true);
    let root = xray_lambda::TraceId::new();
    let mut svc = xray_lambda::XRayLayer::new()
        .daemon_address("127.0.0.1:0")
        .enabled(true)
        .layer(lambda_runtime::service_fn(
            move |_: lambda_runtime::LambdaEvent<Value>| {
                let ddb = ddb.clone();
                async move {
                    ddb.get_item()
                        .table_name(TABLE)
                        .key("userId", AttributeValue::S("u".into()))
                        .send()
                        .await?;
                    Ok::<_, lambda_runtime::Error>(())
                }
            },
        ));
    let mut ctx = lambda_runtime::Context::default();
    ctx.xray_trace_id = Some(sampled(&root));
    svc.call(lambda_runtime::LambdaEvent::new(Value::Null, ctx))
        .await
        .unwrap();
    assert_eq!(
        proxy.trace_headers()[0].as_deref(),
        Some(sampled(&root).as_str())
    );
}

/// A presigned request is signed for someone else to send later: the SDK runs the
/// interceptor's hooks for it, but there is no call to record, and the request must not
/// carry this trace. A call made after it is recorded as usual.
#[tokio::test]
async fn a_presigned_request_is_neither_recorded_nor_given_the_trace_header() {
    use aws_sdk_s3::presigning::PresigningConfig;
    use std::sync::{Arc, Mutex};
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let proxy = Proxy::start(moto.addr, Vec::new(), false);
    let s3c = s3(&proxy.endpoint, true);
    // Each presigned request's URI, and whether it carries a trace header.
    let presigned: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let work = {
        let presigned = presigned.clone();
        move || {
            let (s3c, presigned) = (s3c.clone(), presigned.clone());
            async move {
                let config = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
                let request = s3c
                    .get_object()
                    .bucket(BUCKET)
                    .key("report.pdf")
                    .presigned(config)
                    .await
                    .unwrap();
                let traced = request
                    .headers()
                    .any(|(k, _)| k.eq_ignore_ascii_case("x-amzn-trace-id"));
                presigned
                    .lock()
                    .unwrap()
                    .push((request.uri().to_owned(), traced));
                s3c.put_object()
                    .bucket(BUCKET)
                    .key("after.txt")
                    .body(b"x".to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
        }
    };
    let root = xray_lambda::TraceId::new();
    let docs = invoke(&sampled(&root), 2, work.clone()).await;
    assert_eq!(docs.len(), 2, "the handler and PutObject only: {docs:#?}");
    assert!(aws_docs(&docs, "GetObject").is_empty());
    let put = aws_docs(&docs, "PutObject")[0];
    let handler = docs.iter().find(|d| d["id"] != put["id"]).unwrap();
    assert_eq!(handler["name"], "## handler");
    assert_eq!(put["parent_id"], handler["id"]);
    assert_eq!(
        proxy.trace_headers(),
        [Some(format!(
            "Root={root};Parent={};Sampled=1;{LINEAGE}",
            put["id"].as_str().unwrap()
        ))],
        "only PutObject reached S3"
    );

    // Unsampled: nothing recorded either way, and still no header on the presigned one.
    let docs = invoke(
        &format!("Root={root};Parent={FACADE};Sampled=0;{LINEAGE}"),
        0,
        work,
    )
    .await;
    assert!(docs.is_empty());
    assert_eq!(proxy.trace_headers().len(), 2);
    assert!(proxy.trace_headers()[1]
        .as_deref()
        .is_some_and(|h| h.ends_with("Sampled=0;Lineage=a87bd80c:0")));

    for (uri, traced) in presigned.lock().unwrap().iter() {
        assert!(uri.contains("X-Amz-Signature="), "presigned: {uri}");
        assert!(!traced, "a presigned request carries no trace header");
    }
    assert_eq!(presigned.lock().unwrap().len(), 2);
}

/// A recorded parameter too large for one datagram is cut from the document; the call
/// is still recorded, with the rest of what X-Ray shows for it.
#[tokio::test]
async fn a_huge_recorded_parameter_is_cut_not_the_call() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&moto.endpoint)
        .interceptor(XRayInterceptor::new().with_parameter("DynamoDB", "PutItem", "Item"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let ddb = aws_sdk_dynamodb::Client::from_conf(config);
    let root = xray_lambda::TraceId::new();
    let docs = invoke(&sampled(&root), 2, move || {
        let ddb = ddb.clone();
        async move {
            ddb.put_item()
                .table_name(TABLE)
                .item("userId", AttributeValue::S("u-big".into()))
                .item("blob", AttributeValue::S("x".repeat(100_000)))
                .send()
                .await
                .unwrap();
        }
    })
    .await;
    let put = aws_docs(&docs, "PutItem")[0];
    assert_eq!(put["name"], "DynamoDB");
    assert_eq!(put["aws"]["table_name"], TABLE);
    assert!(put["aws"].get("item").is_none());
    assert_eq!(put["http"]["response"]["status"], 200);
    assert_eq!(
        put["metadata"]["xray_lambda"]["truncated"],
        json!(["aws_parameters"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_many_concurrent_calls_and_per_call_registration() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let shared = dynamodb(&moto.endpoint, true);
    let plain = s3(&moto.endpoint, false);
    let docs = invoke(&sampled(&xray_lambda::TraceId::new()), 13, move || {
        let (ddb, s3c) = (shared.clone(), plain.clone());
        async move {
            let calls = (0..5).map(|i| {
                let ddb = ddb.clone();
                async move {
                    let _s = begin_subsegment(format!("writer_{i}"));
                    ddb.put_item()
                        .table_name(TABLE)
                        .item("userId", AttributeValue::S(format!("u-{i}")))
                        .send()
                        .await
                        .unwrap();
                }
            });
            futures_join_all(calls).await;
            // Per call, on a client without the interceptor.
            s3c.list_buckets()
                .customize()
                .interceptor(XRayInterceptor::new())
                .send()
                .await
                .unwrap();
            s3c.list_buckets().send().await.unwrap();
            ddb.get_item()
                .table_name(TABLE)
                .key("userId", AttributeValue::S("u-0".into()))
                .customize()
                .interceptor(XRayInterceptor::new())
                .send()
                .await
                .unwrap();
        }
    })
    .await;
    let puts = aws_docs(&docs, "PutItem");
    assert_eq!(puts.len(), 5);
    for i in 0..5 {
        let writer = by_name(&docs, &format!("writer_{i}"));
        let mine: Vec<_> = puts
            .iter()
            .filter(|p| p["parent_id"] == writer["id"])
            .collect();
        assert_eq!(mine.len(), 1, "each call under the subsegment that made it");
    }
    let mut ids: Vec<_> = puts
        .iter()
        .map(|p| p["aws"]["request_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert_eq!(
        aws_docs(&docs, "ListBuckets").len(),
        1,
        "only the customized call is recorded"
    );
    let get = aws_docs(&docs, "GetItem");
    assert_eq!(get.len(), 1);
    assert_eq!(
        get[0]["aws"]["retries"], 0,
        "the second registration counts no attempts"
    );
    let aws_calls = docs.iter().filter(|d| d.get("aws").is_some()).count();
    assert_eq!(aws_calls, 7, "registered twice, recorded once: {docs:#?}");
}

/// `join_all` without a futures dependency: polls every future on each wake-up.
async fn futures_join_all<F: Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// S3 answers some requests with a 3xx, which the SDK gives as an error: a 304 to a
/// conditional request is what was asked for (no fault, no error); a 301 for a bucket in
/// another region is the service's error code and message, an `error`, not a fault.
#[tokio::test]
async fn s3_redirects_are_errors_and_not_modified_is_neither() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let redirecting = Proxy::start(
        moto.addr,
        vec![Canned {
            status: 301,
            content_type: "application/xml",
            body:
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code>\
                   <Message>The bucket you are attempting to access must be addressed using \
                   the specified endpoint.</Message><Bucket>user-files</Bucket></Error>"
                    .into(),
        }],
        false,
    );
    let (s3c, elsewhere) = (s3(&moto.endpoint, true), s3(&redirecting.endpoint, true));
    let root = xray_lambda::TraceId::new();
    let docs = invoke(&sampled(&root), 4, move || {
        let (s3c, elsewhere) = (s3c.clone(), elsewhere.clone());
        async move {
            let put = s3c
                .put_object()
                .bucket(BUCKET)
                .key("cached.txt")
                .body(b"hello".to_vec().into())
                .send()
                .await
                .unwrap();
            let unchanged = s3c
                .get_object()
                .bucket(BUCKET)
                .key("cached.txt")
                .if_none_match(put.e_tag().unwrap())
                .send()
                .await;
            assert!(unchanged.is_err(), "the SDK gives a 304 as an error");
            let moved = elsewhere
                .get_object()
                .bucket(BUCKET)
                .key("cached.txt")
                .send()
                .await;
            assert!(moved.is_err());
        }
    })
    .await;
    let gets = aws_docs(&docs, "GetObject");
    let status = |d: &Value| d["http"]["response"]["status"].as_u64();
    let not_modified = gets.iter().find(|d| status(d) == Some(304)).unwrap();
    for flag in ["fault", "error", "throttle", "cause"] {
        assert!(not_modified.get(flag).is_none(), "{flag}: {not_modified:#}");
    }
    let moved = gets.iter().find(|d| status(d) == Some(301)).unwrap();
    assert_eq!(moved["error"], true, "{moved:#}");
    assert!(moved.get("fault").is_none());
    let exception = &moved["cause"]["exceptions"][0];
    assert_eq!(exception["type"], "PermanentRedirect");
    assert!(exception["message"]
        .as_str()
        .unwrap()
        .starts_with("The bucket you are attempting to access"));
    assert_eq!(exception["remote"], true);
}
