use xray_lambda::capture;

#[capture]
fn plain() {}

#[capture("custom name")]
fn named() -> u32 {
    1
}

#[capture(name = "named with key")]
fn named_key() -> &'static str {
    "x"
}

#[derive(serde::Serialize)]
struct Order {
    id: u32,
}

#[capture(annotate(user, count, ratio, ok, owned), metadata(order), response, error_kind = "error")]
fn options(user: &str, count: u64, ratio: f32, ok: bool, owned: String, order: &Order) -> Result<u32, String> {
    if ok {
        Ok(order.id + count as u32 + ratio as u32 + owned.len() as u32 + user.len() as u32)
    } else {
        Err("no".into())
    }
}

#[capture(error_kind = "throttle")]
fn throttled() -> std::io::Result<()> {
    Ok(())
}

#[capture]
fn question_mark(s: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = s.parse()?;
    Ok(n)
}

#[capture]
fn returns_impl() -> impl Iterator<Item = u8> {
    0..3
}

#[capture]
fn result_of_impl() -> Result<impl Iterator<Item = u8>, std::fmt::Error> {
    Ok(0..3)
}

#[capture]
fn early_return(flag: bool) -> Option<u8> {
    if flag {
        return None;
    }
    Some(1)
}

#[capture]
async fn async_plain() {}

#[capture]
async fn async_question_mark(s: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = s.parse()?;
    Ok(n)
}

#[capture("async impl")]
async fn async_impl() -> impl std::fmt::Debug {
    5
}

fn main() {
    plain();
    let _ = named() + named_key().len() as u32;
    let _ = options("u", 1, 1.0, true, String::new(), &Order { id: 1 });
    let _ = throttled();
    let _ = question_mark("1");
    let _ = returns_impl().count() + result_of_impl().map(|i| i.count()).unwrap_or(0);
    let _ = early_return(true);
    let _ = async_plain();
    let _ = async_question_mark("1");
    let _ = async_impl();
}
