const NAME: &str = "n";

#[xray_lambda::capture(name = NAME)]
fn f() {}

fn main() {
    f();
}
