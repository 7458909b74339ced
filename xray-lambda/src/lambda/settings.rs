//! The wrapper's settings: from the environment, overridden by [`XRayLayer`]'s builder.
//!
//! [`XRayLayer`]: super::XRayLayer

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{self, AddressError};
use crate::emitter::Emitter;

/// Function name used when neither the environment nor the runtime knows it.
const UNKNOWN_FUNCTION: &str = "handler";
const HANDLER_PREFIX: &str = "## ";

/// The handler subsegment's name and its metadata keys, derived once from the function
/// name.
#[derive(Clone, Debug)]
pub(super) struct Names {
    pub handler: String,
    pub response_key: String,
    pub error_key: String,
}

impl Names {
    fn new(function: &str) -> Self {
        Names {
            handler: format!("{HANDLER_PREFIX}{function}"),
            response_key: format!("{function} response"),
            error_key: format!("{function} error"),
        }
    }
}

/// Where documents go.
#[derive(Clone, Debug)]
pub(super) enum Daemon {
    /// `AWS_XRAY_DAEMON_ADDRESS`, or the default address.
    FromEnv,
    /// The builder's address, parsed (and resolved) when it was given.
    Given(Result<SocketAddr, AddressError>),
}

#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub enabled: bool,
    /// From `AWS_LAMBDA_FUNCTION_NAME` (what `lambda_runtime` reads too), or `handler`.
    pub names: Names,
    pub service: String,
    pub capture_response: bool,
    pub capture_error: bool,
    pub daemon: Daemon,
    /// `sam local invoke` sends no trace header: start a local trace instead.
    pub sam_local: bool,
    /// How long before the deadline what an invocation holds is sent; zero: never.
    pub timeout_margin: Duration,
    /// Pending subsegments past which finished subtrees are sent early.
    pub streaming_threshold: usize,
    /// The emitter for `daemon`, connected once however many services the layer makes.
    connected: Arc<OnceLock<Option<Arc<Emitter>>>>,
}

impl Settings {
    pub(super) fn from_env() -> Self {
        Settings {
            enabled: config::tracing_enabled(),
            names: Names::new(
                config::function_name()
                    .as_deref()
                    .unwrap_or(UNKNOWN_FUNCTION),
            ),
            service: config::service_name()
                .unwrap_or_else(|| config::DEFAULT_SERVICE_NAME.to_owned()),
            capture_response: config::capture_response().unwrap_or(true),
            capture_error: config::capture_error().unwrap_or(true),
            daemon: Daemon::FromEnv,
            sam_local: config::sam_local(),
            timeout_margin: config::timeout_margin(),
            streaming_threshold: config::streaming_threshold(),
            connected: Arc::default(),
        }
    }

    pub(super) fn set_daemon(&mut self, address: &str) {
        self.daemon = Daemon::Given(config::parse_daemon_address(address));
        self.connected = Arc::default();
    }

    /// Where this layer's documents go, resolved and connected now (when a service is
    /// built, never inside an invocation): `None` when tracing is disabled, or the
    /// address is unusable (logged once, here).
    pub(super) fn emitter(&self) -> Option<Arc<Emitter>> {
        if !self.enabled {
            return None;
        }
        self.connected
            .get_or_init(|| match &self.daemon {
                Daemon::FromEnv => Emitter::from_env(),
                Daemon::Given(address) => Emitter::connect_or_log(address.clone()),
            })
            .clone()
    }
}
