//! What an incoming request tells about itself: where it was sent, from where, by what.

use std::net::{IpAddr, SocketAddr};

use crate::document::HttpRequest;

/// The header proxies and load balancers put the client's address in, first hop first.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// The scheme the client used, when a proxy terminated TLS.
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Reads the peer's address from what the server put in a request's extensions.
pub(crate) type PeerIp = fn(&http::Extensions) -> Option<IpAddr>;

/// A `SocketAddr` or `IpAddr` in the extensions, as servers that expose the peer put it
/// there (or a middleware of the user's).
pub(crate) fn default_peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| extensions.get::<IpAddr>().copied())
}

/// The `Host` a request was sent to (the URI's authority for HTTP/2), port included.
pub(crate) fn authority<B>(req: &http::Request<B>) -> &str {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// The host name of an authority, without its port (IPv6 literals keep their brackets).
pub(crate) fn host_name(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

/// `http.request` of an incoming request: method, URL without the query string,
/// user agent, and the client's address, from `X-Forwarded-For` first (then marked
/// `x_forwarded_for`), else the peer's.
pub(crate) fn describe<B>(req: &http::Request<B>, peer: Option<IpAddr>) -> HttpRequest {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = text(X_FORWARDED_PROTO)
        .and_then(|p| p.split(',').next())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .or(req.uri().scheme_str())
        .unwrap_or("http");
    let forwarded = text(X_FORWARDED_FOR)
        .and_then(|f| f.split(',').next())
        .map(str::trim)
        .filter(|ip| !ip.is_empty());
    let (client_ip, x_forwarded_for) = match forwarded {
        Some(ip) => (Some(ip.to_owned()), true),
        None => (peer.map(|ip| ip.to_string()), false),
    };
    HttpRequest {
        method: req.method().as_str().to_owned(),
        url: format!("{scheme}://{}{}", authority(req), req.uri().path()),
        user_agent: text(http::header::USER_AGENT.as_str()).map(str::to_owned),
        client_ip,
        x_forwarded_for,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_url_leaves_the_query_out_and_the_forwarded_client_is_marked() {
        let r = request(
            "/orders/7?token=secret",
            &[
                ("host", "shop.example.com:8080"),
                ("user-agent", "curl/8"),
                ("x-forwarded-for", " 203.0.113.7 , 10.0.0.1"),
                ("x-forwarded-proto", "https"),
            ],
        );
        let d = describe(&r, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(d.method, "POST");
        assert_eq!(d.url, "https://shop.example.com:8080/orders/7");
        assert_eq!(d.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(d.client_ip.as_deref(), Some("203.0.113.7"));
        assert!(d.x_forwarded_for);
    }

    #[test]
    fn without_forwarding_the_peer_is_the_client() {
        let r = request("http://api.test/x", &[]);
        let d = describe(&r, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(d.url, "http://api.test/x");
        assert_eq!(
            (d.client_ip.as_deref(), d.x_forwarded_for),
            (Some("192.0.2.1"), false)
        );
        assert_eq!(describe(&r, None).client_ip, None);
        let mut e = http::Extensions::new();
        assert_eq!(default_peer_ip(&e), None);
        e.insert("192.0.2.9:443".parse::<SocketAddr>().unwrap());
        assert_eq!(default_peer_ip(&e), Some("192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn host_names_lose_the_port_only() {
        assert_eq!(host_name("a.test:80"), "a.test");
        assert_eq!(host_name("a.test"), "a.test");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("::1"), "::1");
    }
}
