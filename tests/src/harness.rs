//! Test harness: a UDP daemon that validates every document against AWS's schema, the
//! Lambda Runtime API emulator (`cargo lambda watch`), a small runtime-API stub for
//! headers the emulator cannot be told, and the function binary.

// A test harness: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use xray_local::document::flatten;
use xray_local::validate::Validator;

/// A stand-in for the X-Ray daemon: collects every datagram, checking it against the
/// wire format and validating its document (nested subsegments included) against the
/// schema, with `xray-local`'s validator.
#[derive(Debug)]
pub struct Daemon {
    pub addr: SocketAddr,
    datagrams: Arc<Mutex<Vec<(SystemTime, Value)>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let validator = Validator::new().unwrap();
        let (d, p) = (datagrams.clone(), problems.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while let Ok(n) = socket.recv(&mut buf) {
                let (doc, wrong) = validator.check(&buf[..n]);
                if !wrong.is_empty() {
                    p.lock().unwrap().push(format!(
                        "{wrong:?} in {}",
                        String::from_utf8_lossy(&buf[..n])
                    ));
                }
                if let Some(doc) = doc {
                    d.lock().unwrap().push((SystemTime::now(), doc));
                }
            }
        });
        Daemon {
            addr,
            datagrams,
            problems,
        }
    }

    /// Waits until `n` segments and subsegments arrived (or a timeout), then a little
    /// longer to catch any that should not have come.
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(200));
        self.documents()
    }

    /// Waits until `n` datagrams arrived (or a timeout), then a little longer to catch
    /// any that should not have come; gives them with when each arrived.
    pub fn wait_for_datagrams(&self, n: usize) -> Vec<(SystemTime, Value)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.datagrams.lock().unwrap().len() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(200));
        self.arrivals()
    }

    fn count(&self) -> usize {
        let datagrams = self.datagrams.lock().unwrap();
        datagrams
            .iter()
            .map(|(_, d)| xray_local::document::count(d))
            .sum()
    }

    /// Waits for the daemon to stay quiet for a moment: for checks that nothing is sent.
    pub fn settle(&self) -> Vec<Value> {
        thread::sleep(Duration::from_millis(500));
        self.documents()
    }

    /// Every segment and subsegment received, nested ones as documents of their own
    /// (children before parents).
    pub fn documents(&self) -> Vec<Value> {
        self.datagrams().iter().flat_map(flatten).collect()
    }

    /// The document of every datagram received.
    pub fn datagrams(&self) -> Vec<Value> {
        self.arrivals().into_iter().map(|(_, d)| d).collect()
    }

    /// The document of every datagram received, with when it arrived.
    pub fn arrivals(&self) -> Vec<(SystemTime, Value)> {
        let problems = self.problems.lock().unwrap();
        assert!(problems.is_empty(), "invalid documents: {problems:#?}");
        self.datagrams.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.datagrams.lock().unwrap().clear();
    }
}

/// A loopback TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server with [`spawn`] and waits until it listens on `port`.
pub fn start_server(command: &mut Command, port: u16) -> Process {
    let process = spawn(command);
    let deadline = Instant::now() + Duration::from_secs(60);
    // A TCP connect, not an HTTP request: the emulator counts any request outside
    // `/.rt` as a Function URL call.
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{command:?} did not listen on {port}; it wrote: {:#?}",
            process.log_lines("")
        );
        thread::sleep(Duration::from_millis(50));
    }
    process
}

/// Kills the process when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn new(child: Child) -> Self {
        Process {
            child,
            log: Arc::default(),
        }
    }

    /// Lines the process wrote to stderr that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `cargo-lambda` executable: `$CARGO_LAMBDA`, the project's `.venv`, or `PATH`.
fn cargo_lambda() -> PathBuf {
    std::env::var_os("CARGO_LAMBDA").map_or_else(|| venv_tool("cargo-lambda"), PathBuf::from)
}

/// A reference document the official Python SDK sent (`tests/fixtures/python-sdk/`).
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/python-sdk")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The Lambda Runtime API emulator, serving `/.rt` for a function started separately.
#[derive(Debug)]
pub struct Emulator {
    pub port: u16,
    _process: Process,
}

impl Emulator {
    pub fn start() -> Self {
        let port = free_port();
        let process = start_server(
            Command::new(cargo_lambda())
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "-A",
                    "127.0.0.1",
                    "-P",
                ])
                .arg(port.to_string())
                .current_dir(env!("CARGO_MANIFEST_DIR")),
            port,
        );
        Emulator {
            port,
            _process: process,
        }
    }

    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// Invokes the function and returns the HTTP status and the parsed body.
    pub fn invoke(&self, payload: &Value) -> (u16, Value) {
        let body = payload.to_string();
        let request = format!(
            "POST /2015-03-31/functions/_/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Starts `command` with its stderr collected, killed when the handle is dropped.
pub fn spawn(command: &mut Command) -> Process {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let stderr = child.stderr.take().unwrap();
    let process = Process::new(child);
    let log = process.log.clone();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().unwrap().push(line);
        }
    });
    process
}

/// Starts the function binary against `runtime_api`, sending to `daemon`.
pub fn start_function(
    binary: &Path,
    runtime_api: &str,
    daemon: SocketAddr,
    env: &[(&str, &str)],
) -> Process {
    let mut cmd = Command::new(binary);
    cmd.env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "e2e-function")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_XRAY_DAEMON_ADDRESS", daemon.to_string())
        .env("POWERTOOLS_SERVICE_NAME", "e2e")
        .env_remove("_X_AMZN_TRACE_ID")
        .env_remove("AWS_XRAY_SDK_ENABLED")
        .env_remove("POWERTOOLS_TRACE_DISABLED");
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn(&mut cmd)
}

/// A minimal Lambda Runtime API that hands out invocations with a trace header the test
/// chooses (the emulator always sends a fresh sampled one).
#[derive(Debug)]
pub struct RuntimeStub {
    pub addr: SocketAddr,
    state: Arc<(Mutex<StubState>, Condvar)>,
}

#[derive(Debug, Default)]
struct StubState {
    queue: VecDeque<Queued>,
    results: Vec<(String, String, String)>,
    /// The deadline each invocation was handed out with.
    deadlines: Vec<(String, SystemTime)>,
}

/// An invocation waiting for the function to ask for it.
#[derive(Debug)]
struct Queued {
    id: String,
    header: Option<String>,
    payload: String,
    deadline: Duration,
}

/// How long the stub gives an invocation unless told otherwise.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

impl RuntimeStub {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<StubState>, Condvar)> = Arc::default();
        let s = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let s = s.clone();
                thread::spawn(move || serve(stream, &s));
            }
        });
        RuntimeStub { addr, state }
    }

    pub fn runtime_api(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues an invocation; returns when the function has answered it, with
    /// `("response" | "error", body)`.
    pub fn invoke(&self, trace_header: Option<&str>, payload: &Value) -> (String, Value) {
        let id = self.queue(trace_header, payload, DEFAULT_DEADLINE);
        self.answer(&id, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the function did not answer {id}"))
    }

    /// Queues an invocation whose deadline (`Lambda-Runtime-Deadline-Ms`) is `deadline`
    /// after the function receives it; returns its request id at once.
    pub fn queue(&self, trace_header: Option<&str>, payload: &Value, deadline: Duration) -> String {
        let id = format!("req-{}", rand_suffix());
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap().queue.push_back(Queued {
            id: id.clone(),
            header: trace_header.map(str::to_owned),
            payload: payload.to_string(),
            deadline,
        });
        cvar.notify_all();
        id
    }

    /// The deadline invocation `id` was handed out with, once the function took it.
    pub fn deadline_of(&self, id: &str) -> Option<SystemTime> {
        let (lock, _) = &*self.state;
        let st = lock.lock().unwrap();
        st.deadlines.iter().find(|d| d.0 == id).map(|d| d.1)
    }

    /// The function's answer to `id` (`("response" | "error", body)`), if it comes
    /// within `wait`.
    pub fn answer(&self, id: &str, wait: Duration) -> Option<(String, Value)> {
        let until = Instant::now() + wait;
        let (lock, cvar) = &*self.state;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(i) = st.results.iter().position(|r| r.0 == id) {
                let (_, kind, body) = st.results.remove(i);
                return Some((
                    kind,
                    serde_json::from_str(&body).unwrap_or(Value::String(body)),
                ));
            }
            if Instant::now() >= until {
                return None;
            }
            st = cvar.wait_timeout(st, Duration::from_millis(20)).unwrap().0;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// One HTTP/1.1 request read off a connection (bodies by `Content-Length`).
#[derive(Debug)]
pub struct HttpRequest {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The next request on `reader`; `None` when the peer closed the connection.
    pub fn read(reader: &mut impl BufRead) -> std::io::Result<Option<HttpRequest>> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(None);
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.to_owned(), v.trim().to_owned()));
            }
        }
        let mut request = HttpRequest {
            line: line.trim_end().to_owned(),
            headers,
            body: Vec::new(),
        };
        let length = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        request.body = vec![0u8; length];
        reader.read_exact(&mut request.body)?;
        Ok(Some(request))
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

fn serve(stream: TcpStream, state: &(Mutex<StubState>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    while let Ok(Some(request)) = HttpRequest::read(&mut reader) {
        let (path, body) = (request.path().to_owned(), request.body);
        let (lock, cvar) = state;
        let reply = if path.ends_with("/invocation/next") {
            let mut st = lock.lock().unwrap();
            let Queued {
                id,
                header,
                payload,
                deadline,
            } = loop {
                if let Some(next) = st.queue.pop_front() {
                    break next;
                }
                st = cvar.wait(st).unwrap();
            };
            let deadline = SystemTime::now() + deadline;
            st.deadlines.push((id.clone(), deadline));
            drop(st);
            let deadline = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            let trace = header
                .map(|h| format!("Lambda-Runtime-Trace-Id: {h}\r\n"))
                .unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:e2e\r\n{trace}\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
                payload.len()
            )
        } else {
            let parts: Vec<&str> = path.split('/').collect();
            // /2018-06-01/runtime/invocation/{id}/{response|error}
            if let [.., id, kind] = parts.as_slice() {
                let mut st = lock.lock().unwrap();
                st.results.push((
                    id.to_string(),
                    kind.to_string(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                cvar.notify_all();
            }
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_owned()
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The document named `name`.
pub fn by_name<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no document named {name:?} among {docs:#?}"))
}

/// `(Root, Parent)` of a `Root=…;Parent=…;Sampled=…` header.
pub fn root_and_parent(header: &str) -> (String, String) {
    let field = |k: &str| {
        header
            .split(';')
            .find_map(|p| p.trim().strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {header}"))
            .to_owned()
    };
    (field("Root="), field("Parent="))
}

/// The project's `.venv/bin/<tool>`, or `<tool>` on `PATH`.
fn venv_tool(tool: &str) -> PathBuf {
    let venv = workspace_root().join(".venv/bin").join(tool);
    if venv.exists() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(tool))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("{tool} not found: run ./scripts/test.sh (it installs it into .venv)")
        })
}

/// `moto_server`: DynamoDB and S3 on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    pub addr: SocketAddr,
    _process: Process,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let process = start_server(
            Command::new(venv_tool("moto_server"))
                .args(["-H", "127.0.0.1", "-p"])
                .arg(port.to_string()),
            port,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Moto {
            endpoint: format!("http://{addr}"),
            addr,
            _process: process,
        }
    }
}

/// A canned HTTP answer.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// A loopback HTTP proxy in front of `upstream`: records each request's
/// `X-Amzn-Trace-Id`, answers the first `canned` requests itself (all of them with
/// `forever`), and passes the rest through. Every connection is closed after one
/// exchange, so the client never reuses one.
#[derive(Debug)]
pub struct Proxy {
    pub endpoint: String,
    trace_headers: Arc<Mutex<Vec<Option<String>>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, canned: Vec<Canned>, forever: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let trace_headers: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let seen = trace_headers.clone();
        let queue = Arc::new(Mutex::new(VecDeque::from(canned)));
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (seen, queue) = (seen.clone(), queue.clone());
                thread::spawn(move || {
                    let _ = proxy_one(stream, upstream, &seen, &queue, forever);
                });
            }
        });
        Proxy {
            endpoint,
            trace_headers,
        }
    }

    /// The `X-Amzn-Trace-Id` of every request so far, in order.
    pub fn trace_headers(&self) -> Vec<Option<String>> {
        self.trace_headers.lock().unwrap().clone()
    }
}

fn proxy_one(
    stream: TcpStream,
    upstream: SocketAddr,
    seen: &Mutex<Vec<Option<String>>>,
    queue: &Mutex<VecDeque<Canned>>,
    forever: bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(request) = HttpRequest::read(&mut reader)? else {
        return Ok(());
    };
    let trace = request.header("x-amzn-trace-id").map(str::to_owned);
    let mut head = format!("{}\r\n", request.line);
    for (k, v) in request
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("connection"))
    {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = request.body;
    seen.lock().unwrap().push(trace);
    let mut out = stream;
    let canned = {
        let mut q = queue.lock().unwrap();
        if forever {
            q.front().cloned()
        } else {
            q.pop_front()
        }
    };
    if let Some(c) = canned {
        let response = format!(
            "HTTP/1.1 {} Canned\r\nContent-Type: {}\r\nContent-Length: {}\r\nx-amzn-RequestId: canned-request\r\n\
             x-amz-id-2: canned-id-2\r\nConnection: close\r\n\r\n{}",
            c.status,
            c.content_type,
            c.body.len(),
            c.body
        );
        return out.write_all(response.as_bytes());
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head.as_bytes())?;
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    out.write_all(&response)
}

/// A loopback endpoint that accepts connections and never answers, for timeouts.
/// Returns its URL; the listener lives until the process ends.
pub fn silent_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    url
}

/// Runs `work` in-process as the handler of one invocation traced under `header`
/// (through `XRayLayer`, responses not recorded), and returns the documents it sent:
/// once `expected` arrived, or after a quiet moment when `expected` is 0.
pub async fn run_invocation<F, Fut>(header: &str, expected: usize, work: F) -> Vec<Value>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use lambda_runtime::tower::{Layer, Service};
    let daemon = Daemon::start();
    let mut svc = xray_lambda::XRayLayer::new()
        .daemon_address(&daemon.addr.to_string())
        .enabled(true)
        .capture_response(false)
        .layer(lambda_runtime::service_fn(
            move |_: lambda_runtime::LambdaEvent<Value>| {
                let work = work.clone();
                async move {
                    work().await;
                    Ok::<_, lambda_runtime::Error>(())
                }
            },
        ));
    let mut ctx = lambda_runtime::Context::default();
    ctx.xray_trace_id = Some(header.to_owned());
    svc.call(lambda_runtime::LambdaEvent::new(Value::Null, ctx))
        .await
        .unwrap();
    if expected == 0 {
        daemon.settle()
    } else {
        daemon.wait_for(expected)
    }
}

/// Creates the seed scenario's table (on-demand, hash key `userId`) and bucket, as the
/// SAM template does, through the given clients.
pub async fn create_table_and_bucket(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    table: &str,
    bucket: &str,
) {
    create_table(dynamodb, table, "userId").await;
    s3.create_bucket().bucket(bucket).send().await.unwrap();
}

/// Creates an on-demand table with the string hash key `key`.
pub async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// The daemon's sampling API (`POST /GetSamplingRules`, `POST /SamplingTargets`) on a
/// loopback TCP port: `rules` for every rules call, `targets` for every targets call;
/// every call is kept, in order, as `(path, body)`.
#[derive(Debug)]
pub struct SamplingApi {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

impl SamplingApi {
    pub fn start(rules: Value, targets: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let seen = calls.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Ok(Some(request)) = HttpRequest::read(&mut reader) else {
                    continue;
                };
                let path = request.path().to_owned();
                let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let answer = match path.as_str() {
                    "/GetSamplingRules" => rules.to_string(),
                    "/SamplingTargets" => targets.to_string(),
                    _ => "{}".to_owned(),
                };
                seen.lock().unwrap().push((path, body));
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        SamplingApi { addr, calls }
    }

    /// The bodies of the calls to `path` so far.
    pub fn calls(&self, path: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Waits until `n` calls to `path` were made (or a timeout), giving their bodies.
    pub fn wait_for(&self, path: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.calls(path).len() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        self.calls(path)
    }
}
