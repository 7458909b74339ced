//! A service outside Lambda, as it runs on ECS/Fargate or EC2 with the X-Ray daemon as
//! a sidecar: axum, `POST /orders` → DynamoDB `PutItem` into `TABLE_NAME`, plus
//! `GET /health`.
//!
//! Traced with `xray_lambda::http::XRayServerLayer`: one segment per request, sampled
//! by X-Ray's rules (the console's through the daemon, else the file
//! `XRAY_LAMBDA_SAMPLING_RULES` names, else X-Ray's default rule). Inside it, the
//! same tools as in a Lambda function: `#[capture]` (`validate_order`), the
//! `XRayInterceptor` on the DynamoDB client, and `tracing` spans through
//! `XRayTracingLayer` (`#[tracing::instrument]` on `save_order`).
//!
//! Listens on `ORDERS_ADDR` (default `0.0.0.0:8080`).

use std::fmt;
use std::net::SocketAddr;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use xray_lambda::aws::XRayInterceptor;
use xray_lambda::capture;
use xray_lambda::http::XRayServerLayer;

/// What every request needs, built once.
#[derive(Clone, Debug)]
struct App {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderRequest {
    customer_id: String,
    items: Vec<String>,
}

/// Why an order was refused.
#[derive(Debug)]
struct InvalidOrder(&'static str);

impl fmt::Display for InvalidOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidOrder {}

/// Checks an order; an invalid one is a client error (`error`, not `fault`) on this
/// subsegment, with the reason as its cause.
#[capture(error_kind = "error")]
fn validate_order(order: &OrderRequest) -> Result<(), InvalidOrder> {
    xray_lambda::put_annotation("customer_id", order.customer_id.as_str());
    if order.customer_id.trim().is_empty() {
        return Err(InvalidOrder("customerId is empty"));
    }
    if order.items.is_empty() {
        return Err(InvalidOrder("an order needs at least one item"));
    }
    Ok(())
}

/// Stores the order; the `PutItem` is a `DynamoDB` subsegment inside this span's.
#[tracing::instrument(skip_all, fields(items = order.items.len()))]
async fn save_order(app: &App, id: &str, order: &OrderRequest) -> Result<(), String> {
    app.dynamodb
        .put_item()
        .table_name(&app.table)
        .item("orderId", AttributeValue::S(id.to_owned()))
        .item("customerId", AttributeValue::S(order.customer_id.clone()))
        .item("items", AttributeValue::Ss(order.items.clone()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

async fn place_order(State(app): State<App>, body: String) -> (StatusCode, Json<Value>) {
    let order: OrderRequest = match serde_json::from_str(&body) {
        Ok(o) => o,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.to_string() })),
            )
        }
    };
    if let Err(e) = validate_order(&order) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.to_string() })),
        );
    }
    let id = format!("{:016x}", xray_lambda::SegmentId::random().get());
    match save_order(&app, &id, &order).await {
        Ok(()) => (StatusCode::CREATED, Json(json!({ "orderId": id }))),
        Err(e) => {
            tracing::error!(error = %e, "the order could not be stored");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "the order could not be stored" })),
            )
        }
    }
}

/// The DynamoDB client from the environment, with the X-Ray interceptor.
async fn app_from_env() -> Result<App, Box<dyn std::error::Error>> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
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
    Ok(App { dynamodb, table })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let xray = XRayServerLayer::new("orders")
        // axum puts the peer's address here with `into_make_service_with_connect_info`.
        .peer_ip(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    let router = Router::new()
        .route("/orders", post(place_order))
        .route("/health", get(|| async { "ok" }))
        .with_state(app)
        .layer(xray);
    let address = std::env::var("ORDERS_ADDR").unwrap_or_else(|_| "0.0.0.0:8080".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    tracing::info!(address = %listener.local_addr()?, "orders-service listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
