//! The seed app in Rust: API Gateway (REST, proxy integration) `POST /users` → this
//! function → DynamoDB `PutItem` into `TABLE_NAME` and S3 `PutObject`
//! `users/{userId}/info.txt` into `BUCKET_NAME`.
//!
//! It shows the four ways of tracing side by side:
//! 1. manual nested subsegments with an annotation and metadata (`validate_request`),
//! 2. `#[capture]` on a function (`save_user`),
//! 3. `XRayInterceptor` on both AWS clients (the `DynamoDB` and `S3` subsegments),
//! 4. `XRayTracingLayer`: a `#[tracing::instrument]`ed function (`profile_text`).
//!
//! With `NOTIFY_URL` set, it then POSTs `{"userId": …}` there through a
//! `reqwest-middleware` client carrying `XRayMiddleware`: the trace shows that call as a
//! remote node, and the notified service receives the trace header. A failed
//! notification is logged, and the request still succeeds.

use std::fmt;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use lambda_http::{Body, Request, Response};
use lambda_runtime::tower::Layer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use xray_lambda::aws::XRayInterceptor;
use xray_lambda::{begin_subsegment, capture, ErrorKind, XRayLayer};

/// The clients and names the handler needs, built once per process.
#[derive(Clone, Debug)]
struct App {
    dynamodb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    table: String,
    bucket: String,
    /// Where to announce new users, if anywhere, and the client that does it.
    notify: Option<(String, reqwest_middleware::ClientWithMiddleware)>,
}

/// The request body of `POST /users`.
#[derive(Debug, Deserialize, Serialize)]
struct NewUser {
    #[serde(rename = "userId")]
    user_id: String,
    name: String,
    email: String,
}

/// Why a request is refused with 400.
#[derive(Debug)]
struct InvalidRequest(String);

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidRequest {}

/// Why the user could not be stored (500); the AWS error is its source.
#[derive(Debug)]
enum SaveError {
    Record(aws_sdk_dynamodb::Error),
    Profile(aws_sdk_s3::Error),
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaveError::Record(_) => f.write_str("could not write the user record to DynamoDB"),
            SaveError::Profile(_) => f.write_str("could not write the user profile to S3"),
        }
    }
}

impl std::error::Error for SaveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SaveError::Record(e) => Some(e),
            SaveError::Profile(e) => Some(e),
        }
    }
}

/// Sample 1: a manual subsegment with a nested one, an annotation and metadata.
fn validate_request(body: &Body) -> Result<NewUser, InvalidRequest> {
    let validate = begin_subsegment("validate_request");
    let parsed = {
        let _parse = begin_subsegment("parse_body");
        parse_user(body)
    };
    match &parsed {
        Ok(user) => {
            validate.put_annotation("userId", user.user_id.as_str());
            validate.put_metadata("user", user);
        }
        Err(e) => {
            validate.put_annotation("valid", false);
            validate.record_error_as(e, ErrorKind::Error);
        }
    }
    parsed
}

fn parse_user(body: &Body) -> Result<NewUser, InvalidRequest> {
    let bytes: &[u8] = body.as_ref();
    if bytes.is_empty() {
        return Err(InvalidRequest(
            "the request has no body; send {\"userId\", \"name\", \"email\"}".into(),
        ));
    }
    let user: NewUser = serde_json::from_slice(bytes)
        .map_err(|e| InvalidRequest(format!("the body is not a user: {e}")))?;
    if user.user_id.trim().is_empty() {
        return Err(InvalidRequest("userId must not be empty".into()));
    }
    if !user.email.contains('@') {
        return Err(InvalidRequest(format!(
            "{:?} is not an email address",
            user.email
        )));
    }
    Ok(user)
}

/// Sample 2: a captured function; inside it, sample 3: both clients carry the
/// interceptor, so each call is its own subsegment under this one.
#[capture("save_user")]
async fn save_user(app: &App, user: &NewUser) -> Result<(), SaveError> {
    xray_lambda::put_annotation("userId", user.user_id.as_str());
    app.dynamodb
        .put_item()
        .table_name(&app.table)
        .item("userId", AttributeValue::S(user.user_id.clone()))
        .item("name", AttributeValue::S(user.name.clone()))
        .item("email", AttributeValue::S(user.email.clone()))
        .send()
        .await
        .map_err(|e| SaveError::Record(e.into()))?;
    let profile = profile_text(user);
    app.s3
        .put_object()
        .bucket(&app.bucket)
        .key(format!("users/{}/info.txt", user.user_id))
        .content_type("text/plain")
        .body(profile.into_bytes().into())
        .send()
        .await
        .map_err(|e| SaveError::Profile(e.into()))?;
    Ok(())
}

/// Sample 4: a function instrumented with `tracing`; `XRayTracingLayer` makes its span a
/// subsegment (under `save_user`), the `annotation.` field an annotation.
#[tracing::instrument(skip(user), fields(annotation.userId = %user.user_id))]
fn profile_text(user: &NewUser) -> String {
    format!("name: {}\nemail: {}\n", user.name, user.email)
}

fn json_response(status: u16, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status
        .try_into()
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn create_user(app: &App, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let user = match validate_request(request.body()) {
        Ok(user) => user,
        Err(e) => return Ok(json_response(400, json!({ "message": e.to_string() }))),
    };
    match save_user(app, &user).await {
        Ok(()) => {
            notify(app, &user).await;
            Ok(json_response(
                200,
                json!({ "userId": user.user_id, "message": "User created successfully" }),
            ))
        }
        Err(e) => {
            // The handler subsegment refers to the exception `save_user` recorded.
            xray_lambda::record_error(&e);
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default();
            Ok(json_response(
                500,
                json!({ "message": e.to_string(), "error": cause }),
            ))
        }
    }
}

/// Sample 5: an outgoing HTTP call through `XRayMiddleware`, a subsegment named after
/// the host.
async fn notify(app: &App, user: &NewUser) {
    let Some((url, client)) = &app.notify else {
        return;
    };
    let body = json!({ "userId": user.user_id }).to_string();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(status = %r.status(), "the new-user notification was refused"),
        Err(e) => tracing::warn!(error = %e, "the new-user notification failed"),
    }
}

/// AWS clients from the environment, each with the X-Ray interceptor. With
/// `AWS_ENDPOINT_URL` set (a local DynamoDB/S3 such as moto), S3 uses path-style URLs.
async fn app_from_env() -> Result<App, lambda_runtime::Error> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let bucket = std::env::var("BUCKET_NAME").map_err(|_| "BUCKET_NAME is not set")?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(XRayInterceptor::new())
            .build(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
            .interceptor(XRayInterceptor::new())
            .build(),
    );
    let notify = std::env::var("NOTIFY_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|url| {
            let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(xray_lambda::http::XRayMiddleware::new())
                .build();
            (url, client)
        });
    Ok(App {
        dynamodb,
        s3,
        table,
        bucket,
        notify,
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    use tracing_subscriber::prelude::*;

    tracing_subscriber::registry()
        .with(xray_lambda::XRayTracingLayer::new())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .init();
    let app = app_from_env().await?;
    let handler = lambda_http::service_fn(move |request: Request| {
        let app = app.clone();
        async move { create_user(&app, request).await }
    });
    lambda_runtime::run(XRayLayer::new().layer(lambda_http::Adapter::from(handler))).await
}
