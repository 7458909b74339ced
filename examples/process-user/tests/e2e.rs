//! The example under the Lambda Runtime API emulator with moto_server as DynamoDB and
//! S3: what it stores, what it answers, and the trace it sends (every document
//! validated against the schema by the harness daemon).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use xray_lambda_e2e::harness::{
    self, by_name, start_function, Canned, Daemon, Emulator, Moto, Process, Proxy,
};

const HANDLER: &str = "## process-user";

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sdk_config(moto: &Moto) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new("test", "test", None, None, "test"),
        ))
        .endpoint_url(&moto.endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build()
}

async fn create_table_and_bucket(moto: &Moto) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(moto));
    harness::create_table_and_bucket(&dynamodb, &s3(moto), "users-table", "user-files").await;
}

fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config(moto))
            .force_path_style(true)
            .build(),
    )
}

fn function(
    emulator: &Emulator,
    daemon: &Daemon,
    moto: &Moto,
    table: &str,
    notify_url: &str,
) -> Process {
    start_function(
        Path::new(env!("CARGO_BIN_EXE_process-user")),
        &emulator.runtime_api(),
        daemon.addr,
        &[
            ("NOTIFY_URL", notify_url),
            ("AWS_LAMBDA_FUNCTION_NAME", "process-user"),
            ("POWERTOOLS_SERVICE_NAME", "process-user"),
            ("TABLE_NAME", table),
            ("BUCKET_NAME", "user-files"),
            ("AWS_ENDPOINT_URL", &moto.endpoint),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    )
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_the_user_and_traces_every_way() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    // The service notified of new users: answers 200, keeps the trace headers it gets.
    let ok = Canned {
        status: 200,
        content_type: "application/json",
        body: "{}".into(),
    };
    let notified = Proxy::start(moto.addr, vec![ok], true);
    let notify_url = format!("{}/notify?key=secret", notified.endpoint);
    let _function = function(&emulator, &daemon, &moto, "users-table", &notify_url);

    let (_, response) = tokio::task::block_in_place(|| emulator.invoke(&event("create-user")));
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        body(&response),
        json!({"userId": "u-1", "message": "User created successfully"})
    );

    // What it stored.
    let item = aws_sdk_dynamodb::Client::new(&sdk_config(&moto))
        .get_item()
        .table_name("users-table")
        .key("userId", AttributeValue::S("u-1".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["email"], AttributeValue::S("ann@example.com".into()));
    let object = s3(&moto)
        .get_object()
        .bucket("user-files")
        .key("users/u-1/info.txt")
        .send()
        .await
        .unwrap();
    let text = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        std::str::from_utf8(&text).unwrap(),
        "name: Ann Lee\nemail: ann@example.com\n"
    );

    // The trace.
    let docs = tokio::task::block_in_place(|| daemon.wait_for(8));
    assert_eq!(docs.len(), 8, "{docs:#?}");
    let datagrams = daemon.datagrams();
    assert_eq!(datagrams.len(), 1, "the invocation is one datagram");
    assert_eq!(
        datagrams[0]["name"], HANDLER,
        "the handler's, everything nested in it"
    );
    let root = docs[0]["trace_id"].clone();
    assert!(
        docs.iter().all(|d| d["trace_id"] == root),
        "one trace: the invocation's Root"
    );
    let handler = by_name(&docs, HANDLER);
    assert!(
        docs.iter().all(|d| d["id"] != handler["parent_id"]),
        "the handler hangs off Lambda's function segment"
    );
    assert_eq!(
        handler["annotations"],
        json!({"ColdStart": true, "Service": "process-user"})
    );
    let validate = by_name(&docs, "validate_request");
    assert_eq!(validate["parent_id"], handler["id"]);
    assert_eq!(validate["annotations"], json!({"userId": "u-1"}));
    assert_eq!(
        validate["metadata"]["default"]["user"],
        json!({"userId": "u-1", "name": "Ann Lee", "email": "ann@example.com"})
    );
    assert_eq!(by_name(&docs, "parse_body")["parent_id"], validate["id"]);
    let save = by_name(&docs, "save_user");
    assert_eq!(save["parent_id"], handler["id"]);
    assert_eq!(save["annotations"]["userId"], "u-1");
    let ddb = by_name(&docs, "DynamoDB");
    assert_eq!(ddb["parent_id"], save["id"]);
    assert_eq!(
        (&ddb["aws"]["operation"], &ddb["aws"]["table_name"]),
        (&json!("PutItem"), &json!("users-table"))
    );
    let profile = by_name(&docs, "profile_text");
    assert_eq!(
        profile["parent_id"], save["id"],
        "a tracing span, via the layer"
    );
    assert_eq!(profile["annotations"], json!({"userId": "u-1"}));
    // The notification: a remote subsegment, and the header naming it.
    let call = by_name(&docs, "127.0.0.1");
    assert_eq!(call["parent_id"], handler["id"]);
    assert_eq!(call["namespace"], "remote");
    assert_eq!(
        call["http"]["request"],
        json!({"method": "POST", "url": format!("{}/notify", notified.endpoint)})
    );
    assert_eq!(call["http"]["response"]["status"], 200);
    let headers = notified.trace_headers();
    let seen = headers[0].as_deref().unwrap();
    assert!(
        seen.contains(&format!(
            ";Parent={};Sampled=1",
            call["id"].as_str().unwrap()
        )),
        "{seen}"
    );
    let s3doc = by_name(&docs, "S3");
    assert_eq!(s3doc["parent_id"], save["id"]);
    assert_eq!(s3doc["aws"]["operation"], "PutObject");
    assert_eq!(
        (&s3doc["aws"]["bucket_name"], &s3doc["aws"]["key"]),
        (&json!("user-files"), &json!("users/u-1/info.txt"))
    );

    // A request without a body: 400, recorded as a client error on validate_request.
    daemon.clear();
    let (_, response) = tokio::task::block_in_place(|| emulator.invoke(&event("missing-body")));
    assert_eq!(response["statusCode"], 400);
    assert!(body(&response)["message"]
        .as_str()
        .unwrap()
        .contains("no body"));
    let docs = tokio::task::block_in_place(|| daemon.wait_for(3));
    assert_eq!(daemon.datagrams().len(), 1);
    let validate = by_name(&docs, "validate_request");
    assert_eq!(validate["error"], true);
    assert!(validate.get("fault").is_none());
    assert_eq!(validate["cause"]["exceptions"][0]["type"], "InvalidRequest");
    assert!(docs.iter().all(|d| d["name"] != "save_user"));
    assert_eq!(by_name(&docs, HANDLER)["annotations"]["ColdStart"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_answers_500_and_the_trace_shows_why() {
    let moto = Moto::start();
    create_table_and_bucket(&moto).await;
    let daemon = Daemon::start();
    let emulator = Emulator::start();
    let _function = function(&emulator, &daemon, &moto, "missing-table", "");

    let (_, response) = tokio::task::block_in_place(|| emulator.invoke(&event("create-user")));
    assert_eq!(response["statusCode"], 500, "{response}");
    let answer = body(&response);
    assert_eq!(
        answer["message"],
        "could not write the user record to DynamoDB"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("ResourceNotFoundException"),
        "{answer}"
    );

    let docs = tokio::task::block_in_place(|| daemon.wait_for(5));
    assert_eq!(daemon.datagrams().len(), 1);
    let ddb = by_name(&docs, "DynamoDB");
    assert_eq!(ddb["error"], true);
    assert_eq!(
        ddb["cause"]["exceptions"][0]["type"],
        "ResourceNotFoundException"
    );
    assert_eq!(ddb["aws"]["table_name"], "missing-table");
    let save = by_name(&docs, "save_user");
    assert_eq!(save["fault"], true);
    let chain = save["cause"]["exceptions"].as_array().unwrap();
    assert_eq!(chain[0]["type"], "SaveError");
    assert_eq!(
        chain[0]["message"],
        "could not write the user record to DynamoDB"
    );
    assert!(
        chain.len() >= 2,
        "the AWS error is in the source chain: {chain:?}"
    );
    let handler = by_name(&docs, HANDLER);
    assert_eq!(handler["fault"], true);
    assert_eq!(
        handler["cause"], chain[0]["id"],
        "the handler refers to save_user's exception"
    );
    assert!(
        docs.iter().all(|d| d["name"] != "S3"),
        "nothing written to S3 after the failure"
    );
}
