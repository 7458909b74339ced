//! `#[capture]`: runs a function or method in an X-Ray subsegment. Use it through
//! `xray_lambda::capture`; the `xray-lambda` crate documents it.

mod expand;
mod options;

use proc_macro::TokenStream;

/// Runs the function in a subsegment named after it (or the given name), recording a
/// returned `Err` and a panic. Options: `"name"` / `name = "…"`, `error_kind = "error"`
/// (or `"throttle"`; default `"fault"`), `annotate(param, …)`, `metadata(param, …)`,
/// `response`. See `xray_lambda::capture` for the full description.
#[proc_macro_attribute]
pub fn capture(args: TokenStream, item: TokenStream) -> TokenStream {
    let options = match syn::parse::<options::Options>(args) {
        Ok(o) => o,
        Err(e) => return with_item(e, item),
    };
    match expand::expand(options, item.clone().into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => with_item(e, item),
    }
}

/// The error, plus the item unchanged so that one mistake in the attribute does not
/// cascade into errors at every call of the function.
fn with_item(e: syn::Error, item: TokenStream) -> TokenStream {
    let mut out: TokenStream = e.to_compile_error().into();
    out.extend(item);
    out
}
