//! The Lambda function the end-to-end tests run. The event's `scenario` picks what it
//! does; every response carries the trace header the invocation got, so the tests know
//! which documents belong to it.

// The `panic` scenario panics on purpose.
#![allow(clippy::panic)]

use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use xray_lambda::aws::XRayInterceptor;
use xray_lambda::{begin_segment, begin_subsegment, put_annotation, FutureExt};

#[derive(Debug)]
struct LoadUserError(ParseUserError);
#[derive(Debug)]
struct ParseUserError(std::num::ParseIntError);

impl fmt::Display for LoadUserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not load user")
    }
}
impl fmt::Display for ParseUserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("user id is not a number")
    }
}
impl std::error::Error for LoadUserError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
impl std::error::Error for ParseUserError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// `#[instrument]`ed work, nested with `#[capture]`, a guard and an AWS call.
#[tracing::instrument(skip(endpoint), fields(annotation.request_id = %request_id, items = tracing::field::Empty))]
async fn process(request_id: &str, endpoint: &str) -> Result<(), Error> {
    checksum("42");
    tracing::Span::current().record("items", 2);
    tokio::join!(branch("a"), branch("b"));
    store(endpoint).await;
    let _ = refuse("x");
    Ok(())
}

#[tracing::instrument(ret)]
fn checksum(id: &str) -> u32 {
    digits(id)
}

#[xray_lambda::capture]
fn digits(id: &str) -> u32 {
    id.bytes().map(|b| u32::from(b.wrapping_sub(b'0'))).sum()
}

#[tracing::instrument]
async fn branch(which: &'static str) {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _g = begin_subsegment(format!("{which}_guard"));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[xray_lambda::capture]
async fn store(endpoint: &str) {
    // The table does not exist: the call fails, which is recorded on its subsegment.
    let _ = dynamodb(endpoint)
        .get_item()
        .table_name("users")
        .key("userId", AttributeValue::S("u-1".into()))
        .send()
        .await;
    write_row(endpoint).await;
}

/// An AWS call inside an `#[instrument]`ed function.
#[tracing::instrument(skip(endpoint))]
async fn write_row(endpoint: &str) {
    let _ = dynamodb(endpoint)
        .put_item()
        .table_name("users")
        .item("userId", AttributeValue::S("u-1".into()))
        .send()
        .await;
}

#[tracing::instrument(err)]
fn refuse(id: &str) -> Result<u64, ParseUserError> {
    id.parse().map_err(ParseUserError)
}

/// Queries through sqlx on an in-memory SQLite database: in the handler, in an
/// `#[instrument]`ed function (once failing), and in a `#[capture]`d one.
async fn sql() -> Result<(), Error> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await?;
    sqlx::query("CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    save_user(&pool, "u-1").await?;
    // The same key again: refused by the database.
    let _ = save_user(&pool, "u-1").await;
    count_users(&pool).await?;
    Ok(())
}

#[tracing::instrument(skip(pool), err)]
async fn save_user(pool: &sqlx::SqlitePool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO users (id, name) VALUES (?, ?)")
        .bind(id)
        .bind("Ana")
        .execute(pool)
        .await?;
    Ok(())
}

#[xray_lambda::capture]
async fn count_users(pool: &sqlx::SqlitePool) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?;
    Ok(n)
}

fn load_user(id: &str) -> Result<u64, LoadUserError> {
    id.parse().map_err(|e| LoadUserError(ParseUserError(e)))
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let header = event.context.xray_trace_id.clone();
    let request_id = event.context.request_id.clone();
    match event.payload["scenario"].as_str().unwrap_or_default() {
        // The seed's sample 1: nested manual subsegments with an annotation and metadata.
        "nested" => {
            let s1 = begin_subsegment("subsegment_1");
            s1.put_annotation("annotation1", "annotation test");
            s1.put_metadata_in("subsegment_1_metadata", "data", &json!({"key1": "value1"}));
            s1.end();
            let s2 = begin_subsegment("subsegment_2");
            begin_subsegment("subsegment_3-1").end();
            begin_subsegment("subsegment_3-2").end();
            s2.end();
            // Refused inside Lambda: logged, nothing sent.
            let segment = begin_segment("segment_1");
            segment.put_annotation("ignored", true);
        }
        "error_chain" => {
            let s = begin_subsegment("load_user");
            let result = load_user("not-a-number");
            if let Err(e) = &result {
                s.record_error(e);
            }
            drop(s);
            result?;
        }
        "panic" => {
            let _s = begin_subsegment("about_to_panic");
            let user: Option<&str> = None;
            if user.is_none() {
                panic!("no user in the event");
            }
        }
        "concurrent" => {
            put_annotation("request_id", request_id.as_str());
            async {
                put_annotation("request_id", request_id.as_str());
                tokio::time::sleep(Duration::from_millis(150)).await;
                async {
                    put_annotation("request_id", request_id.as_str());
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                .in_subsegment("inner")
                .await;
            }
            .in_subsegment("outer")
            .await;
        }
        // Never finishes: nested subsegments, and inside them an AWS call to an endpoint
        // that accepts the connection and never answers.
        "hang" => {
            let _outer = begin_subsegment("outer");
            let _inner = begin_subsegment("inner");
            let endpoint = event.payload["endpoint"].as_str().unwrap_or_default();
            dynamodb(endpoint)
                .get_item()
                .table_name("users")
                .key("userId", AttributeValue::S("u-1".into()))
                .send()
                .await?;
        }
        // Works (awaiting) for `ms` before it finishes.
        "slow" => {
            let _outer = begin_subsegment("outer");
            begin_subsegment("done_early").end();
            let _inner = begin_subsegment("inner");
            let ms = event.payload["ms"].as_u64().unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        // Blocks its thread for `ms` (no `.await`): the runtime cannot poll anything else
        // on it meanwhile.
        "block_thread" => {
            let _s = begin_subsegment("blocking");
            let ms = event.payload["ms"].as_u64().unwrap_or_default();
            std::thread::sleep(Duration::from_millis(ms));
        }
        "instrumented" => {
            let endpoint = event.payload["endpoint"].as_str().unwrap_or_default();
            process(&request_id, endpoint).await?;
        }
        "sql" => sql().await?,
        other => return Err(format!("unknown scenario {other:?}").into()),
    }
    Ok(json!({ "trace_header": header, "request_id": request_id }))
}

/// A DynamoDB client for `endpoint`, traced.
fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(XRayInterceptor::new())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn main() -> Result<(), Error> {
    use tracing_subscriber::prelude::*;

    // sqlx logs each query at DEBUG: the X-Ray layer sees them, the log output only
    // INFO and up.
    tracing_subscriber::registry()
        .with(xray_lambda::XRayTracingLayer::new().sql_database_type("SQLite"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .init();
    // `E2E_CURRENT_THREAD`: one runtime thread, which a blocking handler holds.
    let runtime = if std::env::var("E2E_CURRENT_THREAD").is_ok() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        if std::env::var("E2E_CONCURRENT").is_ok() {
            xray_lambda::run_concurrent(service_fn(handler)).await
        } else {
            xray_lambda::run(service_fn(handler)).await
        }
    })
}
