//! `xray-local`: see X-Ray traces without the console.
//!
//! ```text
//! xray-local listen [--address 127.0.0.1:2000] [--jsonl FILE]
//! xray-local show FILE.jsonl [--html OUT.html] [--filter 'annotation.ColdStart = true']
//! ```
//!
//! `listen` stands in for the X-Ray daemon: it validates every document it receives
//! against AWS's schema (saying what is wrong), prints a line for each, and appends
//! them to a JSON Lines file. `show` groups a file's documents by trace and prints each
//! trace as a timeline like the console's; `--html` also writes one self-contained page
//! with the timelines and a service map.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::net::UdpSocket;
use std::process::ExitCode;

use serde_json::Value;
use xray_local::filter::Filter;
use xray_local::{document, html, text, trace, validate};

const USAGE: &str = "usage:
  xray-local listen [--address HOST:PORT] [--jsonl FILE]
      act as the X-Ray daemon (default 127.0.0.1:2000): validate each document,
      print a line for it, append it to FILE
  xray-local show FILE [--html OUT] [--filter EXPR]
      print each trace in FILE (JSON Lines) as a timeline; write an HTML page;
      EXPR: annotation.KEY = VALUE [AND ...], with = or !=";

const HELP: &str = "xray-local: see AWS X-Ray traces without the console.

USAGE:
  xray-local listen [--address HOST:PORT] [--jsonl FILE]
  xray-local show FILE [--html OUT] [--filter EXPR]
  xray-local --help | --version

COMMANDS:
  listen   Stand in for the X-Ray daemon: receive the UDP datagrams an X-Ray SDK
           sends, check each against the daemon's wire format and AWS's segment
           document schema (nested subsegments included), print one line per
           datagram (✓, or ✗ and what is wrong), and append each document to FILE.
           Point the SDK at it with AWS_XRAY_DAEMON_ADDRESS=HOST:PORT. Runs until
           interrupted.
  show     Group the documents of FILE (JSON Lines, as listen writes) by trace and
           print each trace as a timeline: names, durations, a proportional bar,
           nesting, annotations, error/throttle/fault flags and the first exception.

OPTIONS:
  --address HOST:PORT   listen: where to receive datagrams (default 127.0.0.1:2000)
  --jsonl FILE          listen: append every received document to FILE
  --html OUT            show: also write one self-contained HTML page with the
                        timelines and the service map to OUT
  --filter EXPR         show: only traces with a document matching EXPR:
                        annotation.KEY = VALUE or annotation.KEY != VALUE, joined
                        with AND (VALUE: true, false, a number, or a
                        \"double-quoted string\")
  -h, --help            print this help
  -V, --version         print the version

EXIT STATUS:
  0 on success; 1 on a usage error, an unreadable file or an address that cannot
  be bound (with a message on stderr).

EXAMPLE:
  xray-local listen --jsonl traces.jsonl &
  AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:2000 ./my-traced-program
  xray-local show traces.jsonl --html trace.html --filter 'annotation.ColdStart = true'";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("listen") => listen(&args[1..]),
        Some("show") => show(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{HELP}");
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("xray-local {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xray-local: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs.
type Named<'a> = Vec<(&'a str, &'a str)>;

/// `--name value` options and positional arguments.
fn options<'a>(args: &'a [String], known: &[&str]) -> Result<(Vec<&'a str>, Named<'a>), String> {
    let (mut positional, mut named) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            if !known.contains(&name) {
                return Err(format!("unknown option --{name}\n{USAGE}"));
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            named.push((name, value.as_str()));
        } else {
            positional.push(a.as_str());
        }
    }
    Ok((positional, named))
}

fn option<'a>(named: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    named
        .iter()
        .rev()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

fn listen(args: &[String]) -> Result<(), String> {
    let (_, named) = options(args, &["address", "jsonl"])?;
    let address = option(&named, "address").unwrap_or("127.0.0.1:2000");
    let socket =
        UdpSocket::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let mut sink = match option(&named, "jsonl") {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot write {path}: {e}"))?,
        ),
        None => None,
    };
    let validator = validate::Validator::new()?;
    println!("xray-local: listening on udp://{address}");
    let mut buf = vec![0u8; 70_000];
    loop {
        let n = socket
            .recv(&mut buf)
            .map_err(|e| format!("receive failed: {e}"))?;
        let (doc, problems) = validator.check(&buf[..n]);
        let name = doc
            .as_ref()
            .and_then(|d| d["name"].as_str())
            .unwrap_or("?")
            .to_owned();
        let trace = doc
            .as_ref()
            .and_then(|d| d["trace_id"].as_str())
            .unwrap_or("?")
            .to_owned();
        let holds = match doc.as_ref().map_or(0, |d| document::count(d) - 1) {
            0 => String::new(),
            1 => " + 1 nested subsegment".to_owned(),
            n => format!(" + {n} nested subsegments"),
        };
        // Stored before it is reported: a line on the screen means it is in the file.
        if let (Some(doc), Some(file)) = (doc, sink.as_mut()) {
            writeln!(file, "{doc}")
                .and_then(|()| file.flush())
                .map_err(|e| format!("cannot append: {e}"))?;
        }
        if problems.is_empty() {
            println!("✓ {name}{holds}  ({trace}, {n} bytes)");
        } else {
            println!("✗ {name}{holds}  ({trace}, {n} bytes) is not a valid document:");
            for p in &problems {
                println!("    {p}");
            }
        }
        let _ = std::io::stdout().flush();
    }
}

fn show(args: &[String]) -> Result<(), String> {
    let (positional, named) = options(args, &["html", "filter"])?;
    let [path] = positional.as_slice() else {
        return Err(format!("show takes one file\n{USAGE}"));
    };
    let filter = option(&named, "filter").map(Filter::parse).transpose()?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut docs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {path}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let doc: Value =
            serde_json::from_str(&line).map_err(|e| format!("{path}:{}: not JSON: {e}", i + 1))?;
        docs.push(doc);
    }
    let traces: Vec<trace::Trace> = trace::group(docs)
        .into_iter()
        .filter(|t| filter.as_ref().is_none_or(|f| f.matches(t)))
        .collect();
    for t in &traces {
        println!("{}", text::render(t));
    }
    println!("{} traces", traces.len());
    if let Some(out) = option(&named, "html") {
        std::fs::write(out, html::render(&traces))
            .map_err(|e| format!("cannot write {out}: {e}"))?;
        println!("wrote {out}");
    }
    Ok(())
}
