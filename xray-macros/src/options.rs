//! The arguments of `#[capture(...)]`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token};

const EXPECTED: &str = "expected a name (`\"…\"` or `name = \"…\"`), `error_kind = \"…\"`, \
                        `annotate(…)`, `metadata(…)` or `response`";

/// How a returned `Err` counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    #[default]
    Fault,
    Error,
    Throttle,
}

impl ErrorKind {
    pub(crate) fn tokens(self) -> TokenStream {
        match self {
            ErrorKind::Fault => quote!(::xray_lambda::__private::ErrorKind::Fault),
            ErrorKind::Error => quote!(::xray_lambda::__private::ErrorKind::Error),
            ErrorKind::Throttle => quote!(::xray_lambda::__private::ErrorKind::Throttle),
        }
    }
}

#[derive(Default)]
pub(crate) struct Options {
    pub name: Option<LitStr>,
    pub error_kind: ErrorKind,
    pub annotate: Vec<Ident>,
    pub metadata: Vec<Ident>,
    pub response: bool,
}

/// A string literal, or an error at the token that is not one.
fn lit_str(input: ParseStream<'_>, what: &str) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    let span = input
        .cursor()
        .token_tree()
        .map_or(input.span(), |(t, _)| t.span());
    Err(syn::Error::new(
        span,
        format!("{what} must be a string literal"),
    ))
}

fn set_once<T>(slot: &mut Option<T>, value: T, span: Span, what: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, format!("{what} is given twice")));
    }
    *slot = Some(value);
    Ok(())
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut o = Options::default();
        let mut kind_seen = false;
        while !input.is_empty() {
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                set_once(&mut o.name, lit.clone(), lit.span(), "the subsegment name")?;
            } else if input.peek(Ident::peek_any) {
                let ident = input.call(Ident::parse_any)?;
                match ident.to_string().as_str() {
                    "name" => {
                        input.parse::<Token![=]>()?;
                        let lit = lit_str(input, "the subsegment name")?;
                        set_once(&mut o.name, lit, ident.span(), "the subsegment name")?;
                    }
                    "error_kind" => {
                        if kind_seen {
                            return Err(syn::Error::new(
                                ident.span(),
                                "`error_kind` is given twice",
                            ));
                        }
                        kind_seen = true;
                        input.parse::<Token![=]>()?;
                        let lit = lit_str(input, "`error_kind`")?;
                        o.error_kind = match lit.value().as_str() {
                            "fault" => ErrorKind::Fault,
                            "error" => ErrorKind::Error,
                            "throttle" => ErrorKind::Throttle,
                            other => {
                                return Err(syn::Error::new(
                                    lit.span(),
                                    format!("unknown error_kind {other:?}; expected \"fault\", \"error\" or \"throttle\""),
                                ))
                            }
                        };
                    }
                    "annotate" | "metadata" => {
                        let content;
                        syn::parenthesized!(content in input);
                        let args = Punctuated::<Ident, Token![,]>::parse_terminated_with(
                            &content,
                            Ident::parse_any,
                        )?;
                        let list = if ident == "annotate" {
                            &mut o.annotate
                        } else {
                            &mut o.metadata
                        };
                        list.extend(args);
                    }
                    "response" => o.response = true,
                    _ => {
                        let hint = if input.peek(syn::token::Paren) || input.peek(Token![!]) {
                            format!("unknown #[capture] option `{ident}`; the subsegment name must be a string literal; {EXPECTED}")
                        } else {
                            format!("unknown #[capture] option `{ident}`; {EXPECTED}")
                        };
                        return Err(syn::Error::new(ident.span(), hint));
                    }
                }
            } else {
                return Err(input.error(format!(
                    "the subsegment name must be a string literal; {EXPECTED}"
                )));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(o)
    }
}
