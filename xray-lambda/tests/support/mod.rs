//! What the integration tests that listen as the daemon share.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use xray_local::document::flatten;
use xray_local::validate::Validator;

/// The trace header of the tests' sampled invocations.
pub const SAMPLED: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// An invocation's event: `payload`, under the trace `header` (none: no trace).
pub fn event<T>(payload: T, header: Option<&str>) -> lambda_runtime::LambdaEvent<T> {
    let mut ctx = lambda_runtime::Context::default();
    ctx.xray_trace_id = header.map(str::to_owned);
    lambda_runtime::LambdaEvent::new(payload, ctx)
}

/// Runs `fut` to its end on a current-thread runtime with timers: the test's own thread.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(fut)
}

/// The document in one datagram, after checking the daemon's header line and validating
/// it (nested subsegments included) against the segment document schema.
fn parse(datagram: &[u8], validator: &Validator) -> Value {
    let (doc, problems) = validator.check(datagram);
    assert!(problems.is_empty(), "invalid datagram: {problems:?}");
    doc.unwrap()
}

/// Every segment and subsegment that reaches `socket` until its read timeout, nested
/// ones as documents of their own (children before parents).
pub fn receive_all(socket: &UdpSocket) -> Vec<Value> {
    receive_datagrams(socket).iter().flat_map(flatten).collect()
}

/// Every datagram's document that reaches `socket` until its read timeout.
pub fn receive_datagrams(socket: &UdpSocket) -> Vec<Value> {
    let validator = Validator::new().unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(parse(&buf[..n], &validator));
    }
    out
}

/// A daemon that collects in the background, for tests that send many documents or
/// share one process-wide daemon address. It only stores what it receives, so that it
/// keeps up with bursts; documents are checked when read.
pub struct Collector {
    pub address: String,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Collector {
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while let Ok(n) = socket.recv(&mut buf) {
                sink.lock().unwrap().push(buf[..n].to_vec());
            }
        });
        Collector { address, received }
    }

    /// The segments and subsegments of trace `trace_id` (nested ones as documents of
    /// their own), once no datagram has arrived for a moment.
    pub fn trace(&self, trace_id: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|d| d["trace_id"] == trace_id)
            .collect()
    }

    /// Every segment and subsegment received (nested ones as documents of their own),
    /// once no datagram has arrived for a moment.
    pub fn all(&self) -> Vec<Value> {
        self.datagrams().iter().flat_map(flatten).collect()
    }

    /// The document of every datagram received, each checked, once none has arrived
    /// for a moment.
    pub fn datagrams(&self) -> Vec<Value> {
        let validator = Validator::new().unwrap();
        self.raw().iter().map(|d| parse(d, &validator)).collect()
    }

    /// Every datagram received, as it came, once none has arrived for a moment.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        let mut seen = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let now = self.received.lock().unwrap().len();
            if now == seen {
                break;
            }
            seen = now;
            std::thread::sleep(Duration::from_millis(200));
        }
        self.received.lock().unwrap().clone()
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
