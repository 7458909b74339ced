#[xray_lambda::capture(annotate(user_id))]
fn f(user: &str) -> usize {
    user.len()
}

fn main() {
    f("u");
}
