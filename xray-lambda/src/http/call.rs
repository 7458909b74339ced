//! One outgoing HTTP request as a subsegment: what both client entry points share.

use std::borrow::Cow;
use std::sync::Arc;

use crate::context::{self, Node, OnComplete};
use crate::document::{ErrorKind, Exception, Http, HttpRequest, REMOTE_NAMESPACE};
use crate::glob;

use super::TRACE_HEADER;

/// Where a request goes, as the client has it.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Target<'_> {
    /// The URL as recorded: without user info and fragment (never part of a target),
    /// and without the query string unless `with_query` (URLs carry tokens).
    pub(crate) fn url(&self, with_query: bool) -> String {
        let mut url = format!("{}://{}", self.scheme, self.host);
        if let Some(port) = self.port {
            url.push(':');
            url.push_str(&port.to_string());
        }
        url.push_str(if self.path.is_empty() { "/" } else { self.path });
        if let Some(query) = self.query.filter(|_| with_query) {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

/// The settings both entry points share.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientSettings {
    ignored_hosts: Vec<String>,
    with_query: bool,
}

impl ClientSettings {
    pub(crate) fn ignore_host(&mut self, pattern: impl Into<String>) {
        self.ignored_hosts.push(pattern.into());
    }

    pub(crate) fn record_query(&mut self) {
        self.with_query = true;
    }

    /// Starts a request: under a sampled trace, its subsegment (named after the host,
    /// under what is current), which it gives back, and a trace header naming it as the
    /// parent; under an unsampled one, the header with the function segment as the
    /// parent. Any trace header already on the request is replaced. An ignored host, or
    /// no trace, leaves the request as it is.
    pub(crate) fn begin(
        &self,
        method: &http::Method,
        target: &Target<'_>,
        headers: &mut http::HeaderMap,
    ) -> Option<Arc<Node>> {
        let current = context::current()?;
        if self
            .ignored_hosts
            .iter()
            .any(|p| glob::matches_ignoring_case(p, target.host))
        {
            return None;
        }
        let (node, header) = current.begin_call(|| Cow::Owned(target.host.to_owned()))?;
        if let Ok(value) = http::HeaderValue::try_from(header.to_wire()) {
            headers.insert(TRACE_HEADER, value);
        }
        if let Some(node) = &node {
            let url = target.url(self.with_query);
            node.with_record(|r| {
                r.namespace = Some(REMOTE_NAMESPACE);
                r.http = Some(Box::new(Http {
                    request: Some(HttpRequest {
                        method: method.as_str().to_owned(),
                        url,
                        ..HttpRequest::default()
                    }),
                    response: None,
                }));
            });
        }
        node
    }
}

/// How a request ended.
pub(crate) enum Outcome {
    /// The response head arrived.
    Answered {
        status: u16,
        content_length: Option<u64>,
    },
    /// No response: the connection, DNS, a timeout; the error's exceptions.
    Failed(Vec<Exception>),
}

/// What a client's call gives back, seen as an [`Outcome`].
pub(crate) trait CallOutput {
    fn outcome(&self) -> Outcome;
}

/// Records a request's outcome on its subsegment when the call completes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordOutcome;

impl<T: CallOutput> OnComplete<T> for RecordOutcome {
    fn on_complete(&mut self, node: &Node, output: &T) {
        match output.outcome() {
            Outcome::Answered {
                status,
                content_length,
            } => super::record_response(node, status, content_length),
            Outcome::Failed(mut exceptions) => {
                for e in &mut exceptions {
                    e.remote = true;
                }
                node.add_exceptions(exceptions, ErrorKind::Fault);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(query: Option<&'a str>, port: Option<u16>) -> Target<'a> {
        Target {
            scheme: "https",
            host: "api.example.com",
            port,
            path: "/v1/users",
            query,
        }
    }

    #[test]
    fn the_url_is_recorded_without_the_query_unless_asked() {
        let t = target(Some("token=secret"), Some(8443));
        assert_eq!(t.url(false), "https://api.example.com:8443/v1/users");
        assert_eq!(
            t.url(true),
            "https://api.example.com:8443/v1/users?token=secret"
        );
        let root = Target {
            path: "",
            ..target(None, None)
        };
        assert_eq!(root.url(false), "https://api.example.com/");
    }
}
