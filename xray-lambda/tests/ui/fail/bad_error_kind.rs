#[xray_lambda::capture(error_kind = "warning")]
fn f() -> Result<(), String> {
    Ok(())
}

fn main() {
    let _ = f();
}
