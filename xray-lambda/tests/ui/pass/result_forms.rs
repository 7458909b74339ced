//! Returned `Result`s are found by their value's type, however it is spelled; futures
//! returned by sync fns are instrumented.
use std::fmt::Debug;
use std::future::Future;
use std::io;

use xray_lambda::capture;

#[derive(Debug)]
struct MyErr;
impl std::fmt::Display for MyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}
impl std::error::Error for MyErr {}

type ApiResult<T> = Result<T, MyErr>;

#[capture]
async fn impl_ok_with_question_mark(path: &str) -> Result<impl Debug, io::Error> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.len())
}

#[capture]
fn sync_impl_ok(fail: bool) -> Result<impl Debug, io::Error> {
    if fail {
        return Err(io::Error::other("no"));
    }
    Ok(1u8)
}

#[capture(response)]
fn aliased(fail: bool) -> ApiResult<u32> {
    if fail {
        Err(MyErr)
    } else {
        Ok(1)
    }
}

#[capture]
async fn aliased_async() -> ApiResult<()> {
    let _: u32 = aliased(false)?;
    Ok(())
}

#[capture]
async fn whole_impl() -> impl Debug {
    5u32
}

#[capture]
fn returns_a_future(id: u32) -> impl Future<Output = Result<u32, io::Error>> {
    async move {
        let n: u32 = "7".parse().map_err(io::Error::other)?;
        Ok(n + id)
    }
}

#[capture]
fn returns_a_plain_future() -> impl Future<Output = ()> {
    async {}
}

#[capture]
fn returns_a_boxed_future() -> std::pin::Pin<Box<dyn Future<Output = ApiResult<u8>> + Send>> {
    Box::pin(async move { Err(MyErr) })
}

#[capture]
fn diverges() -> ! {
    panic!("never returns")
}

fn main() {
    let _ = impl_ok_with_question_mark("x");
    let _ = sync_impl_ok(true);
    let _ = aliased_async();
    let _ = whole_impl();
    let _ = returns_a_future(1);
    let _ = returns_a_plain_future();
    let _ = returns_a_boxed_future();
    let _: fn() -> ! = diverges;
}
