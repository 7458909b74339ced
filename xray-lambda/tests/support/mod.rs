//! What the integration tests that listen as the daemon share.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema = serde_json::from_str(include_str!(
        "../../../schema/xray-segmentdocument-schema-v1.0.0.json"
    ))
    .unwrap();
    jsonschema::draft4::new(&schema).unwrap()
}

/// The document in one datagram, after checking the daemon's header line and validating
/// it against the segment document schema.
fn parse(datagram: &[u8], validator: &jsonschema::Validator) -> Value {
    let text = std::str::from_utf8(datagram).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    assert_eq!(header, r#"{"format":"json","version":1}"#);
    let doc: Value = serde_json::from_str(body).unwrap();
    assert!(validator.is_valid(&doc), "invalid document {doc}");
    doc
}

/// Every document that reaches `socket` until its read timeout.
pub fn receive_all(socket: &UdpSocket) -> Vec<Value> {
    let validator = validator();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(parse(&buf[..n], &validator));
    }
    out
}

/// A daemon that collects in the background, for tests that send many documents or
/// share one process-wide daemon address.
pub struct Collector {
    pub address: String,
    docs: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap().to_string();
        let docs = Arc::new(Mutex::new(Vec::new()));
        let sink = docs.clone();
        std::thread::spawn(move || {
            let validator = validator();
            let mut buf = vec![0u8; 70_000];
            while let Ok(n) = socket.recv(&mut buf) {
                let doc = parse(&buf[..n], &validator);
                sink.lock().unwrap().push(doc);
            }
        });
        Collector { address, docs }
    }

    /// The documents of trace `trace_id`, once none has arrived for a moment.
    pub fn trace(&self, trace_id: &str) -> Vec<Value> {
        self.settle();
        self.docs
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d["trace_id"] == trace_id)
            .cloned()
            .collect()
    }

    /// Every document received, once none has arrived for a moment.
    pub fn all(&self) -> Vec<Value> {
        self.settle();
        self.docs.lock().unwrap().clone()
    }

    fn settle(&self) {
        let mut seen = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let now = self.docs.lock().unwrap().len();
            if now == seen {
                return;
            }
            seen = now;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What `tracing` logged on this thread while the guard lives.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures this thread's log lines (all levels) until the guard drops.
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines that contain `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
