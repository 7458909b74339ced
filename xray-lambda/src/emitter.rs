//! Sends documents to the X-Ray daemon: one UDP datagram each, never blocking the
//! caller, never larger than a datagram can be.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::{self, AddressError};
use crate::document::{Subtree, MAX_DOCUMENT_PREFIX};

/// The line every datagram starts with.
const HEADER: &[u8] = b"{\"format\":\"json\",\"version\":1}\n";
/// The largest UDP payload the OS accepts over IPv4 (the daemon reads up to 64 KiB).
pub(crate) const MAX_DATAGRAM: usize = 65_507;
/// The largest encoded subtree that, sent on its own, fits one datagram.
pub(crate) const MAX_SUBTREE: usize = MAX_DATAGRAM - HEADER.len() - MAX_DOCUMENT_PREFIX;
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

    /// Sends `subtree` as one document. Failures are counted and logged once, never
    /// returned: tracing must not disturb the function.
    pub(crate) fn send(&self, subtree: &Subtree) {
        let send = |buf: &mut Vec<u8>| {
            buf.clear();
            buf.extend_from_slice(HEADER);
            subtree.write_document(buf);
            if buf.len() > MAX_DATAGRAM {
                // Subtrees are made to fit; this would be a bug, not a reason to fail.
                tracing::error!(
                    bytes = buf.len(),
                    "X-Ray document too large for one datagram; not sent"
                );
                return;
            }
            if let Err(e) = self.socket.send(buf) {
                self.failed(&e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Children, Kind, Record, Timestamp};
    use crate::id::{SegmentId, TraceId};
    use std::time::Duration;

    fn subtree() -> Subtree {
        let record = Record::new(
            "doc".into(),
            SegmentId::random(),
            TraceId::new(),
            Some(SegmentId::random()),
            Kind::Subsegment,
            Timestamp::now(),
        );
        Subtree::encode(record, Children::default(), MAX_SUBTREE).0
    }

    #[test]
    fn sends_one_datagram_with_header_line() {
        let l = UdpSocket::bind("127.0.0.1:0").unwrap();
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let e = Emitter::connect(l.local_addr().unwrap()).unwrap();
        let s = subtree();
        e.send(&s);
        let mut buf = vec![0u8; 70_000];
        let n = l.recv(&mut buf).unwrap();
        let doc = crate::context::test_support::parse_datagram(&buf[..n]);
        assert_eq!(doc["name"], "doc");
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(e.failures(), 0);
    }

    #[test]
    fn send_to_a_closed_port_does_not_fail_the_caller() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let e = Emitter::connect(port).unwrap();
        for _ in 0..3 {
            e.send(&subtree());
            std::thread::sleep(Duration::from_millis(10));
        }
        // The refusals came back (ICMP on a connected socket) and were counted, not raised.
        assert!(e.failures() >= 1);
    }
}
