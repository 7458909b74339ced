//! The `xray-local` binary: as the daemon (validating what it receives), and showing

#![allow(clippy::unwrap_used, clippy::panic)]
//! traces as text and as an HTML page that headless Chromium renders.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_xray-local");

fn doc(id: &str, parent: &str, name: &str, start: f64, end: f64, extra: &str) -> String {
    format!(
        r#"{{"name":"{name}","id":"{id}","trace_id":"1-5759e988-bd862e3fe1be46a994272793","parent_id":"{parent}","type":"subsegment","start_time":{start},"end_time":{end}{extra}}}"#
    )
}

fn sample_docs() -> Vec<String> {
    vec![
        doc(
            "b000000000000002",
            "a000000000000001",
            "validate_request",
            1.001,
            1.002,
            r#","annotations":{"userId":"u-1"}"#,
        ),
        doc(
            "c000000000000003",
            "a000000000000001",
            "DynamoDB",
            1.003,
            1.010,
            r#","namespace":"aws","aws":{"operation":"PutItem","table_name":"users-table"}"#,
        ),
        doc(
            "d000000000000004",
            "a000000000000001",
            "S3",
            1.010,
            1.020,
            r#","namespace":"aws","error":true,"aws":{"operation":"PutObject"}"#,
        ),
        doc(
            "a000000000000001",
            "f000000000000000",
            "## process-user",
            1.000,
            1.021,
            r#","annotations":{"ColdStart":true,"Service":"process-user"}"#,
        ),
    ]
}

/// The handler's subsegment with the others nested in it, as xray-lambda sends an
/// invocation: one document.
fn nested_sample() -> String {
    let nested = |d: &str| -> String {
        let mut v: serde_json::Value = serde_json::from_str(d).unwrap();
        for field in ["trace_id", "parent_id", "type"] {
            v.as_object_mut().unwrap().remove(field);
        }
        v.to_string()
    };
    let docs = sample_docs();
    let children: Vec<String> = docs[..3].iter().map(|d| nested(d)).collect();
    let handler = &docs[3];
    format!(
        "{},\"subsegments\":[{}]}}",
        &handler[..handler.len() - 1],
        children.join(",")
    )
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/xray-local-test")
}

#[test]
fn listen_validates_and_records_every_document() {
    let dir = target_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("listen.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["listen", "--address", &address, "--jsonl"])
        .arg(&jsonl)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("listening"));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = format!(
        "{{\"format\":\"json\",\"version\":1}}\n{}",
        sample_docs()[0]
    );
    let bad = "{\"format\":\"json\",\"version\":1}\n{\"name\":\"bad name!\",\"id\":\"x\",\"trace_id\":\"1-5759e988-bd862e3fe1be46a994272793\",\"start_time\":1}";
    let nested = format!("{{\"format\":\"json\",\"version\":1}}\n{}", nested_sample());
    sender.send_to(good.as_bytes(), &address).unwrap();
    sender.send_to(bad.as_bytes(), &address).unwrap();
    sender.send_to(nested.as_bytes(), &address).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out
        .last()
        .is_some_and(|l: &String| l.contains("## process-user"))
        && Instant::now() < deadline
    {
        match lines.next() {
            Some(Ok(l)) => out.push(l),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = out.join("\n");
    assert!(out[0].starts_with("✓ validate_request"), "{text}");
    assert!(out[1].starts_with("✗ bad name!"), "{text}");
    assert!(
        text.contains("/name") && text.contains("/id"),
        "says what is wrong: {text}"
    );
    assert!(
        out.last()
            .unwrap()
            .starts_with("✓ ## process-user + 3 nested subsegments"),
        "{text}"
    );
    let stored = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(stored.lines().count(), 3, "all kept for inspection");
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        path.exists(),
        "{} missing: run ./scripts/test.sh, which installs Debian's chromium",
        path.display()
    );
    path
}

#[test]
fn show_prints_timelines_and_the_page_renders_in_chromium() {
    let dir = target_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("show.jsonl");
    std::fs::write(&jsonl, nested_sample()).unwrap();
    let html = dir.join("trace.html");
    let out = Command::new(BIN)
        .arg("show")
        .arg(&jsonl)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[function segment f000000000000000, recorded by Lambda]"),
        "{text}"
    );
    assert!(
        text.contains("  ## process-user") && text.contains("    DynamoDB"),
        "{text}"
    );
    assert!(text.contains("[ERROR]"), "{text}");

    let filtered = Command::new(BIN)
        .arg("show")
        .arg(&jsonl)
        .args(["--filter", "annotation.ColdStart = false"])
        .output()
        .unwrap();
    assert!(String::from_utf8(filtered.stdout)
        .unwrap()
        .contains("0 traces"));
    let bad = Command::new(BIN)
        .arg("show")
        .arg(&jsonl)
        .args(["--filter", "ColdStart"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let png = dir.join("trace.png");
    let _ = std::fs::remove_file(&png);
    let status = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1100,700",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.canonicalize().unwrap().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // A blank page compresses to a few kilobytes; the timeline and the map do not.
    assert!(
        bytes.len() > 20_000,
        "screenshot looks empty: {} bytes",
        bytes.len()
    );
    println!("screenshot of the HTML page: {}", Path::new(&png).display());
}

#[test]
fn help_and_version() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "listen",
        "show",
        "--address",
        "--jsonl",
        "--html",
        "--filter",
        "--version",
        "AWS_XRAY_DAEMON_ADDRESS",
        "EXIT STATUS",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from --help:\n{text}"
        );
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("xray-local {}", env!("CARGO_PKG_VERSION"))
    );
    let wrong = Command::new(BIN).arg("serve").output().unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8(wrong.stderr).unwrap().contains("usage:"));
}
