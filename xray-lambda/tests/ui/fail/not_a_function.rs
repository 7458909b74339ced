#[xray_lambda::capture]
struct Handler;

fn main() {
    let _ = Handler;
}
