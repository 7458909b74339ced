//! The same minimal function under `xray_lambda::run`, for cold-start comparison.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    xray_lambda::run(service_fn(|e: LambdaEvent<Value>| async move {
        let _s = xray_lambda::begin_subsegment("work");
        Ok::<_, Error>(e.payload)
    }))
    .await
}
