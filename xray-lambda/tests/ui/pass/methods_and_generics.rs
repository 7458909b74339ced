use std::fmt::Debug;
use xray_lambda::capture;

struct Repo {
    name: String,
    hits: u32,
}

#[derive(Debug)]
struct NotFound;
impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}
impl std::error::Error for NotFound {}

impl Repo {
    #[capture]
    fn name(&self) -> &str {
        &self.name
    }

    #[capture]
    fn find(&self, key: &str) -> Result<&str, NotFound> {
        if key == self.name { Ok(&self.name) } else { Err(NotFound) }
    }

    #[capture]
    fn bump(&mut self) -> u32 {
        self.hits += 1;
        self.hits
    }

    #[capture]
    fn into_name(self) -> String {
        self.name
    }

    #[capture]
    async fn async_ref(&self) -> Result<u32, NotFound> {
        Ok(self.hits)
    }

    #[capture]
    pub(crate) async fn async_mut(&mut self, by: u32) -> u32 {
        self.hits += by;
        self.hits
    }
}

#[capture]
fn generic<'a, T, E>(items: &'a [T], pick: impl Fn(&T) -> Result<bool, E>) -> Result<Option<&'a T>, E>
where
    T: Debug + 'a,
    E: std::error::Error,
{
    for i in items {
        if pick(i)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

#[capture]
fn generic_debug_error<E: Debug>(e: E) -> Result<(), E> {
    Err(e)
}

#[capture]
async fn async_generic<T: Send + Debug>(value: T) -> Result<T, String> {
    Ok(value)
}

/// # Safety
/// `p` must be valid.
#[capture]
unsafe fn raw(p: *const u8) -> u8 {
    unsafe { *p }
}

fn main() {
    let mut repo = Repo { name: "a".into(), hits: 0 };
    let _ = repo.name().len() + repo.find("a").map(str::len).unwrap_or(0);
    repo.bump();
    let _ = repo.async_ref();
    let _ = repo.async_mut(1);
    let _ = repo.into_name();
    let _ = generic(&[1, 2], |n| Ok::<_, NotFound>(*n > 1));
    let _ = generic_debug_error(5u8);
    let _ = async_generic(1u8);
    let _ = unsafe { raw(&1) };
}
