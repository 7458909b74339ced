//! Sampling decisions for traces this process starts (feature `http-server`): the
//! centralized rules of the X-Ray console when the daemon serves them, else local
//! rules ([`SamplingRules`]: X-Ray's default, or a rules file).
//!
//! Inside Lambda there is nothing to decide: Lambda samples before the function runs.

mod centralized;
mod local;
mod reservoir;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

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
    /// Decides by `local` rules (X-Ray's default rule, shared by the whole process,
    /// when `None`); and, given the daemon's TCP address, by its centralized rules
    /// whenever it has served them.
    pub(crate) fn new(local: Option<Arc<SamplingRules>>, daemon: Option<SocketAddr>) -> Self {
        Sampler {
            local: local.unwrap_or_else(default_rules),
            centralized: daemon.map(centralized),
        }
    }

    pub(crate) fn decide(&self, r: &SamplingRequest<'_>) -> bool {
        self.centralized
            .as_ref()
            .and_then(|c| c.decide(r))
            .unwrap_or_else(|| self.local.decide(r))
    }
}

/// X-Ray's default rule, one for the process: its reservoir of one request a second is
/// the process's, however many layers use it.
fn default_rules() -> Arc<SamplingRules> {
    static DEFAULT: OnceLock<Arc<SamplingRules>> = OnceLock::new();
    DEFAULT.get_or_init(Arc::default).clone()
}

/// The centralized rules of the daemon at `daemon`, one poller for the process (while
/// some layer uses them), as the rules' quotas are given per process.
fn centralized(daemon: SocketAddr) -> Arc<Centralized> {
    static POLLERS: Mutex<Vec<(SocketAddr, Weak<Centralized>)>> = Mutex::new(Vec::new());
    let mut pollers = POLLERS.lock().unwrap_or_else(|e| e.into_inner());
    pollers.retain(|(_, c)| c.strong_count() > 0);
    if let Some(c) = pollers
        .iter()
        .find(|(at, _)| *at == daemon)
        .and_then(|(_, c)| c.upgrade())
    {
        return c;
    }
    let c = Centralized::start(daemon);
    pollers.push((daemon, Arc::downgrade(&c)));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rule_and_a_daemons_rules_are_one_per_process() {
        let daemon: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (a, b) = (
            Sampler::new(None, Some(daemon)),
            Sampler::new(None, Some(daemon)),
        );
        assert!(Arc::ptr_eq(&a.local, &b.local));
        let (ca, cb) = (
            a.centralized.clone().unwrap(),
            b.centralized.clone().unwrap(),
        );
        assert!(Arc::ptr_eq(&ca, &cb), "one poller for the daemon");
        let other = Sampler::new(Some(Arc::default()), Some("127.0.0.1:10".parse().unwrap()));
        assert!(!Arc::ptr_eq(&other.local, &a.local));
        assert!(!Arc::ptr_eq(other.centralized.as_ref().unwrap(), &ca));
        drop((a, b, ca, cb));
        let again = Sampler::new(None, Some(daemon));
        assert!(
            again.centralized.is_some(),
            "a new poller once the last one went"
        );
    }
}
