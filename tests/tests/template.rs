//! The SAM template passes `cfn-lint` and `sam validate --lint` (both offline).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(tool: &str, args: &[&str]) {
    let path = root().join(".venv/bin").join(tool);
    assert!(
        path.exists(),
        "{} missing: run ./scripts/test.sh, which installs it",
        path.display()
    );
    let out = Command::new(&path)
        .args(args)
        .current_dir(root())
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cfn_lint_passes() {
    run("cfn-lint", &["template.yaml"]);
}

#[test]
fn sam_validate_lint_passes() {
    run(
        "sam",
        &[
            "validate",
            "--lint",
            "--template",
            "template.yaml",
            "--region",
            "us-east-1",
        ],
    );
}
