//! Sampling decisions for traces this process starts (feature `http-server`): the
//! centralized rules of the X-Ray console when the daemon serves them, else local
//! rules ([`SamplingRules`]: X-Ray's default, or a rules file).
//!
//! Inside Lambda there is nothing to decide: Lambda samples before the function runs.

mod centralized;
mod local;
mod reservoir;

use std::net::SocketAddr;
use std::sync::Arc;

pub use local::{SamplingRules, SamplingRulesError};

use centralized::Centralized;

/// What a sampling decision looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SamplingRequest<'a> {
    /// The `Host` the request was sent to, without a port.
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The segment name.
    pub service_name: &'a str,
    /// The segment's `origin` (`""` when unknown).
    pub service_type: &'a str,
}

/// Decides which requests are traced.
#[derive(Debug)]
pub(crate) struct Sampler {
    local: Arc<SamplingRules>,
    centralized: Option<Arc<Centralized>>,
}

impl Sampler {
    /// Decides by `local` rules; and, given the daemon's TCP address, by its centralized
    /// rules whenever it has served them.
    pub(crate) fn new(local: Arc<SamplingRules>, daemon: Option<SocketAddr>) -> Self {
        Sampler {
            local,
            centralized: daemon.map(Centralized::start),
        }
    }

    pub(crate) fn decide(&self, r: &SamplingRequest<'_>) -> bool {
        self.centralized
            .as_ref()
            .and_then(|c| c.decide(r))
            .unwrap_or_else(|| self.local.decide(r))
    }
}
