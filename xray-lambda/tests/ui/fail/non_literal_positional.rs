#[xray_lambda::capture(concat!("a", "b"))]
fn f() {}

fn main() {
    f();
}
