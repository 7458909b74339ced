#[xray_lambda::capture(nmae = "typo")]
fn f() {}

fn main() {
    f();
}
