//! A small blocking HTTP/1.1 client for the few local endpoints this crate talks to
//! from a background thread: the daemon's sampling API and the ECS and EC2 metadata
//! endpoints. Plain `http://` only, one request per connection, bounded in time and
//! size. Not for user traffic: it never runs on a request's path.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The most bytes of a response read: sampling rules and metadata documents are a few
/// KiB; anything past this is not one of them.
const MAX_RESPONSE: u64 = 4 << 20;

/// Where a request goes: a resolved address, and the `Host` and path to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

impl Endpoint {
    /// `path` on the server at `addr`.
    pub(crate) fn at(addr: SocketAddr, path: &str) -> Self {
        Endpoint {
            addr,
            host: addr.to_string(),
            path: path.to_owned(),
        }
    }

    /// An `http://host[:port]/path` URL, resolved (this may block on DNS).
    pub(crate) fn parse(url: &str) -> io::Result<Self> {
        let invalid =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| invalid("host resolves to no address"))?;
        Ok(Endpoint {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The same server, another path.
    pub(crate) fn with_path(&self, path: &str) -> Self {
        Endpoint {
            path: path.to_owned(),
            ..self.clone()
        }
    }
}

/// A response: its status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body, if the status is 2xx; else an error naming the status.
    pub(crate) fn ok(self) -> io::Result<Vec<u8>> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            Err(io::Error::other(format!(
                "HTTP {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            )))
        }
    }
}

/// Sends one request and reads the whole response, each step within `timeout`.
pub(crate) fn send(
    method: &str,
    to: &Endpoint,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&to.addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        to.path,
        to.host,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    // One write: one segment on the wire for the small requests this sends.
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    // Read until the response is whole, not until the server closes: one that keeps
    // the connection open despite `Connection: close` is answered all the same.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf)?;
        raw.extend_from_slice(&buf[..n]);
        if raw.len() as u64 > MAX_RESPONSE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response too large",
            ));
        }
        if let Some(response) = parse_response(&raw, n == 0)? {
            return Ok(response);
        }
    }
}

/// The response in `raw`, once it is whole; `None` while more is to come. `closed`: the
/// server closed the connection, so nothing more will.
fn parse_response(raw: &[u8], closed: bool) -> io::Result<Option<Response>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if closed {
            Err(bad("no complete response head"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("response head is not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status in the response"))?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)
    } else if let Some(n) = length {
        rest.get(..n).map(<[u8]>::to_vec)
    } else if closed {
        Some(rest.to_vec())
    } else {
        None
    };
    match body {
        Some(body) => Ok(Some(Response { status, body })),
        None if closed => Err(bad("response body cut short")),
        None => Ok(None),
    }
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `response`, giving back the request it read.
    fn serve_once(response: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        serve_holding(response, Duration::ZERO)
    }

    /// [`serve_once`], keeping the connection open for `hold` after answering.
    fn serve_holding(
        response: &'static [u8],
        hold: Duration,
    ) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request: its head, then the body its Content-Length announces.
            let mut raw = Vec::new();
            let mut buf = [0; 4096];
            let request = loop {
                let n = s.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.parse().unwrap());
                    if body.len() >= length || n == 0 {
                        break text;
                    }
                }
            };
            s.write_all(response).unwrap();
            std::thread::sleep(hold);
            request
        });
        (addr, handle)
    }

    #[test]
    fn posts_and_reads_a_sized_body() {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra");
        let r = send(
            "POST",
            &Endpoint::at(addr, "/GetSamplingRules"),
            &[("Content-Type", "application/json")],
            b"{\"a\":1}",
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /GetSamplingRules HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Content-Length: 7\r\n"));
        assert!(request.ends_with("\r\n\r\n{\"a\":1}"));
    }

    #[test]
    fn a_server_that_keeps_the_connection_open_is_answered_without_waiting() {
        let (addr, _) = serve_holding(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            Duration::from_secs(5),
        );
        let started = std::time::Instant::now();
        let r = send(
            "GET",
            &Endpoint::at(addr, "/"),
            &[],
            b"",
            Duration::from_secs(3),
        )
        .unwrap();
        assert_eq!(r.body, b"{}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn reads_chunked_and_unsized_bodies_and_names_failures() {
        let (addr, _) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        );
        let r = send(
            "GET",
            &Endpoint::at(addr, "/"),
            &[],
            b"",
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let (addr, _) = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\nno such rule");
        let r = send(
            "GET",
            &Endpoint::at(addr, "/"),
            &[],
            b"",
            Duration::from_secs(2),
        )
        .unwrap();
        let e = r.ok().unwrap_err();
        assert_eq!(e.to_string(), "HTTP 404: no such rule");
        assert!(parse_response(b"garbage", true).is_err());
        assert!(
            parse_response(b"garbage", false).unwrap().is_none(),
            "more may come"
        );
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab";
        assert!(parse_response(short, true).is_err());
        assert!(parse_response(short, false).unwrap().is_none());
    }

    #[test]
    fn urls_need_http_and_a_host() {
        let e = Endpoint::parse("http://127.0.0.1:9/v4/abc").unwrap();
        assert_eq!(
            (e.addr.port(), e.path.as_str(), e.host.as_str()),
            (9, "/v4/abc", "127.0.0.1:9")
        );
        assert_eq!(Endpoint::parse("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(Endpoint::parse("https://x/").is_err());
        assert!(Endpoint::parse("http:///x").is_err());
    }
}
