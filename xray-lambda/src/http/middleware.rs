//! [`XRayMiddleware`]: the requests of a `reqwest-middleware` client.

use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::context::{Opened, Scope};
use crate::exception;

use super::call::{CallOutput, ClientSettings, Outcome, RecordOutcome, Target};
use super::content_length;

/// `reqwest-middleware` middleware recording each request as a subsegment and sending
/// the trace header with it. Feature `reqwest`.
///
/// ```
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(xray_lambda::http::XRayMiddleware::new().ignore_host("*.internal"))
///     .build();
/// # drop(client);
/// ```
///
/// Put it after a retry middleware (`.with(retry).with(XRayMiddleware::new())`) and each
/// attempt is a subsegment of its own, which is what X-Ray shows for HTTP calls. See
/// [the module](super) for what is recorded.
#[derive(Clone, Debug, Default)]
pub struct XRayMiddleware {
    settings: ClientSettings,
}

impl XRayMiddleware {
    /// Records every request, without its query string.
    pub fn new() -> Self {
        Self::default()
    }
}

super::client_builder!(XRayMiddleware);

#[async_trait::async_trait]
impl Middleware for XRayMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // The headers are taken out for a moment (a move, no copy) so that the target can
        // borrow the URL in place.
        let mut headers = std::mem::take(req.headers_mut());
        let url = req.url();
        let target = Target {
            scheme: url.scheme(),
            host: url.host_str().unwrap_or_default(),
            port: url.port(),
            path: url.path(),
            query: url.query(),
        };
        let node = self.settings.begin(req.method(), &target, &mut headers);
        *req.headers_mut() = headers;
        match node {
            Some(node) => {
                Scope::new(next.run(req, extensions), Opened::node(node), RecordOutcome).await
            }
            // Nothing to make current or to end: the rest of the chain runs in this
            // future's polls, under whatever context its caller's have.
            None => next.run(req, extensions).await,
        }
    }
}

impl CallOutput for reqwest_middleware::Result<Response> {
    fn outcome(&self) -> Outcome {
        match self {
            Ok(response) => Outcome::Answered {
                status: response.status().as_u16(),
                content_length: content_length(response.headers()),
            },
            Err(reqwest_middleware::Error::Reqwest(e)) => {
                let mut exceptions = exception::from_error(e, None);
                // reqwest names the URL in its message: without its query string, as
                // the subsegment records it.
                if let (Some(url), Some(top)) = (e.url(), exceptions.first_mut()) {
                    if url.query().is_some() {
                        let mut bare = url.clone();
                        bare.set_query(None);
                        top.message = top.message.replace(url.as_str(), bare.as_str());
                    }
                }
                Outcome::Failed(exceptions)
            }
            Err(e) => Outcome::Failed(exception::from_error(e, None)),
        }
    }
}
