//! Settings read from the environment.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

/// The daemon address when `AWS_XRAY_DAEMON_ADDRESS` is not set.
pub(crate) const DEFAULT_DAEMON_ADDRESS: &str = "127.0.0.1:2000";

pub(crate) const ENV_DAEMON_ADDRESS: &str = "AWS_XRAY_DAEMON_ADDRESS";
pub(crate) const ENV_TRACE_ID: &str = "_X_AMZN_TRACE_ID";
const ENV_SDK_ENABLED: &str = "AWS_XRAY_SDK_ENABLED";
const ENV_TRACE_DISABLED: &str = "POWERTOOLS_TRACE_DISABLED";
const ENV_SERVICE_NAME: &str = "POWERTOOLS_SERVICE_NAME";
const ENV_CAPTURE_RESPONSE: &str = "POWERTOOLS_TRACER_CAPTURE_RESPONSE";
const ENV_CAPTURE_ERROR: &str = "POWERTOOLS_TRACER_CAPTURE_ERROR";
const ENV_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
const ENV_TASK_ROOT: &str = "LAMBDA_TASK_ROOT";
const ENV_SAM_LOCAL: &str = "AWS_SAM_LOCAL";
const ENV_STREAMING_THRESHOLD: &str = "XRAY_LAMBDA_STREAMING_THRESHOLD";
const ENV_TIMEOUT_MARGIN_MS: &str = "XRAY_LAMBDA_TIMEOUT_MARGIN_MS";

/// Pending subsegments past which finished subtrees are sent early. Set above what one
/// datagram holds (about 600 small subsegments), so that the size bound acts first and
/// sends whole subtrees, largest first; a lower threshold (the Go SDK's is 20, the Java
/// SDK's 100) only sends finished work sooner, in more datagrams.
pub(crate) const DEFAULT_STREAMING_THRESHOLD: usize = 1_000;
/// How long before an invocation's deadline what it holds is sent. Longer than one
/// CPU-quota period (100 ms): a small function whose handler spins may not get the CPU
/// back sooner.
pub(crate) const DEFAULT_TIMEOUT_MARGIN: Duration = Duration::from_millis(200);

/// The service name Powertools uses when none is configured.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "service_undefined";

/// A daemon address that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressError {
    value: String,
    reason: String,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "X-Ray daemon address {:?} is not usable ({}); expected `host:port` or \
             `tcp:host:port udp:host:port`",
            self.value, self.reason
        )
    }
}

impl std::error::Error for AddressError {}

/// Where the daemon listens: UDP for documents, TCP for the sampling API it proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DaemonAddresses {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

/// Parses a daemon address: `host:port` (both protocols), or `tcp:host:port
/// udp:host:port` in either order. Host names are resolved once, here.
pub(crate) fn parse_daemon_addresses(value: &str) -> Result<DaemonAddresses, AddressError> {
    let err = |reason: &str| AddressError {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = value.split_whitespace().collect();
    let (udp, tcp) = match parts.as_slice() {
        [single] if !single.starts_with("tcp:") && !single.starts_with("udp:") => {
            (*single, *single)
        }
        [a, b] => {
            let (mut udp, mut tcp) = (None, None);
            for p in [a, b] {
                if let Some(rest) = p.strip_prefix("udp:") {
                    udp = Some(rest);
                } else if let Some(rest) = p.strip_prefix("tcp:") {
                    tcp = Some(rest);
                }
            }
            match (udp, tcp) {
                (Some(u), Some(t)) => (u, t),
                _ => return Err(err("needs one tcp: and one udp: part")),
            }
        }
        [] => return Err(err("empty")),
        _ => return Err(err("unrecognised form")),
    };
    let resolve = |part: &str| {
        let Some((host, port)) = part.rsplit_once(':') else {
            return Err(err("no port"));
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        match port.parse::<u16>() {
            Ok(0) => return Err(err("port 0 is not a port anything listens on")),
            Ok(_) => {}
            Err(_) => return Err(err("port is not a number from 1 to 65535")),
        }
        part.to_socket_addrs()
            .map_err(|e| err(&e.to_string()))?
            .next()
            .ok_or_else(|| err("host resolves to no address"))
    };
    Ok(DaemonAddresses {
        udp: resolve(udp)?,
        tcp: if tcp == udp {
            resolve(udp)?
        } else {
            resolve(tcp)?
        },
    })
}

/// The UDP part of a daemon address (see [`parse_daemon_addresses`]).
pub(crate) fn parse_daemon_address(value: &str) -> Result<SocketAddr, AddressError> {
    parse_daemon_addresses(value).map(|a| a.udp)
}

/// The daemon addresses from the environment, or the default.
pub(crate) fn daemon_addresses_from_env() -> Result<DaemonAddresses, AddressError> {
    match std::env::var(ENV_DAEMON_ADDRESS) {
        Ok(v) => parse_daemon_addresses(&v),
        Err(_) => parse_daemon_addresses(DEFAULT_DAEMON_ADDRESS),
    }
}

/// The daemon's UDP address from the environment, or the default.
pub(crate) fn daemon_address_from_env() -> Result<SocketAddr, AddressError> {
    daemon_addresses_from_env().map(|a| a.udp)
}

/// Reads a boolean switch; `None` when unset or unreadable (with a warning).
fn env_bool(name: &str) -> Option<bool> {
    let value = std::env::var(name).ok()?;
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        "" => None,
        _ => {
            tracing::warn!("{name}={value:?} is not a boolean; ignoring it");
            None
        }
    }
}

/// Whether tracing is switched on (`AWS_XRAY_SDK_ENABLED` and
/// `POWERTOOLS_TRACE_DISABLED`).
pub(crate) fn tracing_enabled() -> bool {
    env_bool(ENV_SDK_ENABLED) != Some(false) && env_bool(ENV_TRACE_DISABLED) != Some(true)
}

/// Whether this process runs inside Lambda (including SAM local); read once.
pub(crate) fn in_lambda() -> bool {
    static IN_LAMBDA: OnceLock<bool> = OnceLock::new();
    *IN_LAMBDA.get_or_init(|| {
        std::env::var_os(ENV_FUNCTION_NAME).is_some() || std::env::var_os(ENV_TASK_ROOT).is_some()
    })
}

/// Whether this is `sam local invoke` / `start-api`, which send no trace header.
pub(crate) fn sam_local() -> bool {
    env_bool(ENV_SAM_LOCAL) == Some(true)
}

pub(crate) fn function_name() -> Option<String> {
    std::env::var(ENV_FUNCTION_NAME)
        .ok()
        .filter(|s| !s.is_empty())
}

pub(crate) fn service_name() -> Option<String> {
    std::env::var(ENV_SERVICE_NAME)
        .ok()
        .filter(|s| !s.is_empty())
}

pub(crate) fn capture_response() -> Option<bool> {
    env_bool(ENV_CAPTURE_RESPONSE)
}

pub(crate) fn capture_error() -> Option<bool> {
    env_bool(ENV_CAPTURE_ERROR)
}

/// Reads a number; `None` when unset or unreadable (with a warning).
fn env_number<T: FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!("{name}={value:?} is not a whole number; ignoring it");
            None
        }
    }
}

/// `XRAY_LAMBDA_STREAMING_THRESHOLD`, or the default.
pub(crate) fn streaming_threshold() -> usize {
    env_number(ENV_STREAMING_THRESHOLD).unwrap_or(DEFAULT_STREAMING_THRESHOLD)
}

/// `XRAY_LAMBDA_TIMEOUT_MARGIN_MS`, or the default; zero switches the flush off.
pub(crate) fn timeout_margin() -> Duration {
    env_number(ENV_TIMEOUT_MARGIN_MS).map_or(DEFAULT_TIMEOUT_MARGIN, Duration::from_millis)
}

pub(crate) fn trace_id_env() -> Option<String> {
    std::env::var(ENV_TRACE_ID).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            parse_daemon_address("127.0.0.1:2000").unwrap(),
            "127.0.0.1:2000".parse().unwrap()
        );
        assert_eq!(
            parse_daemon_address(" 169.254.79.129:2000 ")
                .unwrap()
                .port(),
            2000
        );
        assert_eq!(
            parse_daemon_address("[::1]:3000").unwrap(),
            "[::1]:3000".parse().unwrap()
        );
        assert_eq!(parse_daemon_address("localhost:2000").unwrap().port(), 2000);
    }

    #[test]
    fn tcp_udp_forms_in_either_order() {
        let want: SocketAddr = "127.0.0.1:2001".parse().unwrap();
        assert_eq!(
            parse_daemon_address("tcp:127.0.0.1:2000 udp:127.0.0.1:2001").unwrap(),
            want
        );
        assert_eq!(
            parse_daemon_address("udp:127.0.0.1:2001 tcp:127.0.0.1:2000").unwrap(),
            want
        );
        let both = parse_daemon_addresses("udp:127.0.0.1:2001 tcp:127.0.0.1:2000").unwrap();
        assert_eq!(both.tcp, "127.0.0.1:2000".parse().unwrap());
        let single = parse_daemon_addresses("127.0.0.1:2002").unwrap();
        assert_eq!((single.udp, single.tcp), (single.udp, single.udp));
        assert_eq!(single.tcp.port(), 2002);
    }

    #[test]
    fn bad_addresses_say_why() {
        for (bad, reason) in [
            ("", "empty"),
            ("2000", "no port"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:notaport", "not a number"),
            ("127.0.0.1:70000", "not a number"),
            ("127.0.0.1:0", "port 0"),
            ("localhost:0", "port 0"),
            (":2000", "no host"),
            ("udp:127.0.0.1:2000", "unrecognised form"),
            ("tcp:1.2.3.4:1 tcp:1.2.3.4:2", "one tcp: and one udp:"),
            ("tcp:1.2.3.4:1 udp:1.2.3.4:0", "port 0"),
            ("a:1 b:2 c:3", "unrecognised form"),
        ] {
            let e = parse_daemon_address(bad).unwrap_err();
            assert!(e.reason.contains(reason), "{bad:?}: {e}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
