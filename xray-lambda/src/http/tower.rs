//! [`XRayClientLayer`]: the requests of any tower HTTP client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use lambda_runtime::tower::{Layer, Service};

use crate::context::{Opened, Scope};
use crate::exception;

use super::call::{CallOutput, ClientSettings, Outcome, RecordOutcome, Target};
use super::content_length;

/// A tower layer for any `Service<http::Request<B>, Response = http::Response<R>>` HTTP
/// client (hyper-util's, say), recording each request as a subsegment and sending the
/// trace header with it. Feature `http-client`.
///
/// ```ignore
/// let client = tower::ServiceBuilder::new()
///     .layer(xray_lambda::http::XRayClientLayer::new())
///     .service(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http());
/// ```
///
/// The client's error type must be a `std::error::Error` (hyper-util's is): put this
/// layer inside layers that box errors. See [the module](super) for what is recorded.
#[derive(Clone, Debug, Default)]
pub struct XRayClientLayer {
    settings: ClientSettings,
}

impl XRayClientLayer {
    /// Records every request, without its query string.
    pub fn new() -> Self {
        Self::default()
    }
}

super::client_builder!(XRayClientLayer);

impl<S> Layer<S> for XRayClientLayer {
    type Service = XRayClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        XRayClientService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`XRayClientLayer`] makes. Feature `http-client`.
#[derive(Clone, Debug)]
pub struct XRayClientService<S> {
    inner: S,
    settings: ClientSettings,
}

impl<S, B, R> Service<http::Request<B>> for XRayClientService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: std::error::Error + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // A `Uri` clone shares its bytes: no copy, and the request stays free to change.
        let uri = req.uri().clone();
        // An origin-form URI (a path only) leaves the host to the `Host` header.
        let host_header = match uri.host() {
            Some(_) => None,
            None => req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
        };
        let (host, port) = match (uri.host(), host_header.as_deref()) {
            (Some(host), _) => (host, uri.port_u16()),
            (None, Some(h)) => match h.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => (host, port.parse().ok()),
                _ => (h, None),
            },
            (None, None) => ("", None),
        };
        let target = Target {
            scheme: uri.scheme_str().unwrap_or("http"),
            host,
            port,
            path: uri.path(),
            query: uri.query(),
        };
        let method = req.method().clone();
        let node = self.settings.begin(&method, &target, req.headers_mut());
        let inner = self.inner.call(req);
        ResponseFuture {
            state: match node {
                Some(node) => State::Recorded {
                    scope: Scope::new(inner, Opened::node(node), RecordOutcome),
                },
                None => State::Plain { inner },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`XRayClientService`] call: the client's, recorded. Feature
    /// `http-client`.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    /// With nothing to record, the client's future as it is.
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Plain { #[pin] inner: F },
        Recorded { #[pin] scope: Scope<F, RecordOutcome> },
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: std::error::Error + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project().state.project() {
            StateProj::Plain { inner } => inner.poll(cx),
            StateProj::Recorded { scope } => scope.poll(cx),
        }
    }
}

impl<R, E: std::error::Error + 'static> CallOutput for Result<http::Response<R>, E> {
    fn outcome(&self) -> Outcome {
        match self {
            Ok(response) => Outcome::Answered {
                status: response.status().as_u16(),
                content_length: content_length(response.headers()),
            },
            Err(e) => Outcome::Failed(exception::from_error(e, None)),
        }
    }
}
