//! Sends documents to the X-Ray daemon: one UDP datagram each, never blocking the
//! caller, never larger than a datagram can be.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::{self, AddressError};
use crate::document::{Record, Shrink};

/// The line every datagram starts with.
const HEADER: &[u8] = b"{\"format\":\"json\",\"version\":1}\n";
/// The largest UDP payload the OS accepts over IPv4 (the daemon reads up to 64 KiB).
pub(crate) const MAX_DATAGRAM: usize = 65_507;
/// Encode buffers grow to fit a document but are not kept above this size.
const KEEP_BUFFER: usize = 2 * MAX_DATAGRAM;

/// A connected, non-blocking UDP socket to the daemon.
#[derive(Debug)]
pub(crate) struct Emitter {
    socket: UdpSocket,
    send_failures: AtomicU64,
    warned: AtomicBool,
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

impl Emitter {
    pub(crate) fn connect(daemon: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = if daemon.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(daemon)?;
        socket.set_nonblocking(true)?;
        Ok(Emitter {
            socket,
            send_failures: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        })
    }

    /// Opens a socket to `address`; when that cannot be done, logs why (once, here: the
    /// one line that says tracing is off) and gives `None`.
    pub(crate) fn connect_or_log(address: Result<SocketAddr, AddressError>) -> Option<Arc<Self>> {
        let address = match address {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{e}; X-Ray tracing is off");
                return None;
            }
        };
        match Emitter::connect(address) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                tracing::error!(%address, error = %e, "cannot open a UDP socket to the X-Ray daemon; X-Ray tracing is off");
                None
            }
        }
    }

    /// The process-wide emitter for `AWS_XRAY_DAEMON_ADDRESS` (or the default address),
    /// resolved and connected at the first call. Whether tracing is enabled is the
    /// caller's decision.
    pub(crate) fn from_env() -> Option<Arc<Self>> {
        static EMITTER: OnceLock<Option<Arc<Emitter>>> = OnceLock::new();
        EMITTER
            .get_or_init(|| Emitter::connect_or_log(config::daemon_address_from_env()))
            .clone()
    }

    /// Encodes and sends `record`, shrinking it first if it would not fit in one
    /// datagram. Failures are counted and logged once, never returned: tracing must not
    /// disturb the function.
    pub(crate) fn send(&self, mut record: Record) {
        let mut send = |buf: &mut Vec<u8>| {
            if encode_fitting(&mut record, buf) {
                if let Err(e) = self.socket.send(buf) {
                    self.failed(&e);
                }
            }
        };
        // The thread's buffer, unless it is in use (a `Serialize` impl that traces) or
        // already destroyed (a guard dropped during thread-local teardown).
        let sent = BUFFER.try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return false;
            };
            send(&mut buf);
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::with_capacity(4096);
            }
            true
        });
        if sent != Ok(true) {
            send(&mut Vec::new());
        }
    }

    fn failed(&self, e: &io::Error) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %e,
                "could not send an X-Ray document to the daemon; further failures are counted silently"
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn failures(&self) -> u64 {
        self.send_failures.load(Ordering::Relaxed)
    }
}

/// Encodes `record` into `buf` (header line included), applying [`Shrink`] steps (each
/// as often as it helps) until it fits [`MAX_DATAGRAM`]. Returns false, with an error
/// logged, only if even the smallest form of the document does not fit, which a
/// sanitized document cannot reach.
pub(crate) fn encode_fitting(record: &mut Record, buf: &mut Vec<u8>) -> bool {
    let mut steps = Shrink::ALL.iter().peekable();
    loop {
        buf.clear();
        buf.extend_from_slice(HEADER);
        if let Err(e) = serde_json::to_writer(&mut *buf, &*record) {
            tracing::error!(error = %e, name = %record.name, "could not encode an X-Ray document");
            return false;
        }
        if buf.len() <= MAX_DATAGRAM {
            return true;
        }
        let size = buf.len();
        let step = loop {
            match steps.peek() {
                Some(step) if record.shrink(**step) => break **step,
                Some(_) => {
                    steps.next();
                }
                None => {
                    tracing::error!(
                        name = %record.name,
                        bytes = size,
                        "X-Ray document is too large for one datagram even at its smallest; not sent"
                    );
                    return false;
                }
            }
        };
        tracing::warn!(
            name = %record.name,
            bytes = size,
            cut = ?step,
            "X-Ray document exceeds one datagram; shrinking it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Aws, Exception, Http, HttpResponse, Kind, StackFrame};
    use crate::id::{SegmentId, TraceId};
    use std::time::Duration;

    fn record() -> Record {
        Record::new(
            "big".into(),
            SegmentId::random(),
            TraceId::new(),
            Some(SegmentId::random()),
            Kind::Subsegment,
        )
    }

    fn listener() -> (UdpSocket, Emitter) {
        let l = UdpSocket::bind("127.0.0.1:0").unwrap();
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let e = Emitter::connect(l.local_addr().unwrap()).unwrap();
        (l, e)
    }

    fn receive(l: &UdpSocket) -> serde_json::Value {
        let mut buf = vec![0u8; 70_000];
        let n = l.recv(&mut buf).unwrap();
        crate::context::test_support::parse_datagram(&buf[..n])
    }

    #[test]
    fn sends_one_datagram_with_header_line() {
        let (l, e) = listener();
        let r = record();
        let id = r.id.to_string();
        e.send(r);
        let doc = receive(&l);
        assert_eq!(doc["id"], id);
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(e.failures(), 0);
    }

    #[test]
    fn oversized_metadata_is_dropped_and_marked() {
        let (l, e) = listener();
        let mut r = record();
        let big = "x".repeat(100_000);
        r.metadata.insert(
            "default",
            "response",
            serde_json::value::to_raw_value(&big).unwrap(),
        );
        r.annotations.insert("kept", true.into());
        e.send(r);
        let doc = receive(&l);
        assert_eq!(
            doc["metadata"],
            serde_json::json!({"xray_lambda": {"truncated": ["metadata"]}})
        );
        assert_eq!(doc["annotations"]["kept"], true);
    }

    #[test]
    fn oversized_exceptions_lose_stacks_then_text() {
        let mut r = record();
        let frames = (0..2000)
            .map(|i| StackFrame {
                path: format!("src/module_{i}.rs"),
                line: i,
                label: "f".into(),
            })
            .collect();
        r.add_exceptions(vec![Exception {
            id: SegmentId::random(),
            message: "m".repeat(80_000),
            kind: "E".into(),
            remote: false,
            cause: None,
            stack: frames,
            truncated: None,
        }]);
        let mut buf = Vec::new();
        assert!(encode_fitting(&mut r, &mut buf));
        assert!(buf.len() <= MAX_DATAGRAM);
        let doc = crate::context::test_support::parse_datagram(&buf);
        assert_eq!(
            doc["metadata"]["xray_lambda"]["truncated"],
            serde_json::json!(["stacks", "messages"])
        );
        assert_eq!(doc["cause"]["exceptions"][0]["truncated"], 2000);
    }

    /// An exception as the crate makes them, but with any type, however long.
    fn exception(kind: String, message: String) -> Exception {
        Exception {
            kind,
            ..crate::exception::exception(String::new(), message, None)
        }
    }

    #[test]
    fn a_large_aws_parameter_is_dropped_not_the_document() {
        let mut r = record();
        let mut parameters = serde_json::Map::new();
        parameters.insert("table_name".into(), "users".into());
        parameters.insert("item".into(), "x".repeat(100_000).into());
        r.aws = Some(Aws {
            operation: "PutItem".into(),
            parameters,
            ..Aws::default()
        });
        let mut buf = Vec::new();
        assert!(encode_fitting(&mut r, &mut buf));
        let doc = crate::context::test_support::parse_datagram(&buf);
        assert_eq!(doc["aws"]["operation"], "PutItem");
        assert!(doc["aws"].get("item").is_none());
        assert_eq!(
            doc["aws"]["table_name"], "users",
            "only the large one is cut"
        );
        assert_eq!(
            doc["metadata"]["xray_lambda"]["truncated"],
            serde_json::json!(["aws_parameters"])
        );
    }

    #[test]
    fn a_long_exception_type_is_cut_not_the_document() {
        let mut r = record();
        r.add_exceptions(vec![exception("T".repeat(100_000), "m".into())]);
        let mut buf = Vec::new();
        assert!(encode_fitting(&mut r, &mut buf));
        let doc = crate::context::test_support::parse_datagram(&buf);
        assert_eq!(
            doc["cause"]["exceptions"][0]["type"]
                .as_str()
                .unwrap()
                .len(),
            1024
        );
    }

    /// Every field that can grow at once, each past a datagram on its own: the document
    /// still goes out, with its identity and timing.
    #[test]
    fn a_document_huge_in_every_field_still_fits() {
        let mut r = record();
        let huge = || "h".repeat(70_000);
        r.metadata.insert(
            "default",
            "k",
            serde_json::value::to_raw_value(&huge()).unwrap(),
        );
        for i in 0..2_000 {
            r.annotations
                .insert(&format!("key_{i}"), "v".repeat(1000).into());
        }
        r.add_exceptions((0..100).map(|_| exception(huge(), huge())).collect());
        r.aws = Some(Aws {
            operation: huge(),
            request_id: Some(huge()),
            ..Aws::default()
        });
        r.http = Some(Http {
            response: Some(HttpResponse {
                status: 200,
                content_length: None,
            }),
        });
        r.fault = true;
        let mut buf = Vec::new();
        assert!(encode_fitting(&mut r, &mut buf));
        assert!(buf.len() <= MAX_DATAGRAM);
        let doc = crate::context::test_support::parse_datagram(&buf);
        assert_eq!(doc["name"], "big");
        assert_eq!(doc["fault"], true);
        assert_eq!(
            doc["metadata"]["xray_lambda"]["truncated"],
            // No stacks and no parameters to cut here.
            serde_json::json!([
                "metadata",
                "messages",
                "annotations",
                "exceptions",
                "cause_aws_http"
            ])
        );
    }

    #[test]
    fn send_to_a_closed_port_does_not_fail_the_caller() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let e = Emitter::connect(port).unwrap();
        for _ in 0..3 {
            e.send(record());
            std::thread::sleep(Duration::from_millis(10));
        }
        // The refusals came back (ICMP on a connected socket) and were counted, not raised.
        assert!(e.failures() >= 1);
    }
}
