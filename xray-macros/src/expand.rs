//! The code `#[capture]` generates.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{
    Block, Expr, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

use crate::options::Options;

const NOT_A_FUNCTION: &str = "#[capture] applies to functions and methods; \
                              for an async block, use `.in_subsegment(\"name\")` from `xray_lambda::FutureExt`";

pub(crate) fn expand(options: Options, item: TokenStream) -> syn::Result<TokenStream> {
    let mut f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => return Err(not_a_function(item)),
    };
    if let Some(c) = &f.sig.constness {
        return Err(syn::Error::new(
            c.span,
            "#[capture] cannot be used on a `const fn`: subsegments are recorded at run time",
        ));
    }
    check_params(&f, &options.annotate)?;
    check_params(&f, &options.metadata)?;

    let fn_name = f.sig.ident.to_string();
    let name = options.name.as_ref().map_or(fn_name.clone(), |l| l.value());
    let line = quote_spanned!(f.sig.ident.span()=> ::core::line!());
    let site = quote! {
        static __XRAY_SITE: ::xray_lambda::__private::Site = ::xray_lambda::__private::Site {
            name: #name,
            function: #fn_name,
            file: ::core::file!(),
            line: #line,
        };
    };
    let prologue = prologue(&options);

    let body = if f.sig.asyncness.is_some() {
        let output = match &f.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => Some((**t).clone()),
        };
        let stmts = &f.block.stmts;
        let fake_return = output.as_ref().filter(|t| !contains_impl(t)).map(|t| {
            quote! {
                #[allow(unreachable_code, clippy::diverging_sub_expression)]
                if false {
                    let __xray_type_hint: #t = loop {};
                    return __xray_type_hint;
                }
            }
        });
        let future = quote!(async move { #prologue #fake_return #(#stmts)* });
        let hook = hook(&options, output.as_ref());
        quote! {{
            #site
            ::xray_lambda::__private::capture_future(&__XRAY_SITE, #future, #hook).await
        }}
    } else if let Some(output) = boxed_future_output(&f) {
        // `#[async_trait]` has already turned `async fn` into a fn returning
        // `Box::pin(async move { … })`: instrument that future, not the boxing.
        let hook = hook(&options, output.as_ref());
        instrument_boxed_future(&mut f.block, &prologue, &hook)?;
        let stmts = &f.block.stmts;
        quote! {{ #site #(#stmts)* }}
    } else {
        let output = match &f.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => Some((**t).clone()),
        };
        let block = &f.block;
        let inspects = options.response || output.as_ref().is_some_and(is_result);
        if inspects {
            let call = match output.as_ref().filter(|t| !contains_impl(t)) {
                Some(t) => quote!(::xray_lambda::__private::call::<#t, _>(move || #block);),
                // `impl Trait` cannot be named: tie the output to the function's return
                // type instead, so the hook below sees the concrete type.
                None => quote! {
                    ::xray_lambda::__private::call(move || #block);
                    if let ::core::option::Option::Some(__xray_same) = ::xray_lambda::__private::none_like(&__xray_out) {
                        return __xray_same;
                    }
                },
            };
            let hook = hook(&options, output.as_ref());
            quote! {{
                #site
                let __xray_guard = ::xray_lambda::__private::begin(&__XRAY_SITE);
                #prologue
                let __xray_out = #call
                ::xray_lambda::__private::complete(&__xray_guard, &__XRAY_SITE, &__xray_out, #hook);
                __xray_out
            }}
        } else {
            let stmts = &block.stmts;
            quote! {{
                #site
                let __xray_guard = ::xray_lambda::__private::begin(&__XRAY_SITE);
                #prologue
                #(#stmts)*
            }}
        }
    };
    let attrs = &f.attrs;
    let vis = &f.vis;
    let sig = &f.sig;
    Ok(quote!(#(#attrs)* #vis #sig #body))
}

/// Says what the item is instead of a function.
fn not_a_function(item: TokenStream) -> syn::Error {
    if let Ok(method) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        if method.default.is_none() {
            return syn::Error::new(method.sig.span(), "#[capture] needs a function body");
        }
    }
    let span = item
        .into_iter()
        .next()
        .map_or(Span::call_site(), |t| t.span());
    syn::Error::new(span, NOT_A_FUNCTION)
}

/// `annotate(…)` and `metadata(…)` name parameters of the function.
fn check_params(f: &ItemFn, names: &[Ident]) -> syn::Result<()> {
    for name in names {
        if name == "self" {
            return Err(syn::Error::new(
                name.span(),
                "`self` cannot be recorded; name a parameter, or record a field with `xray_lambda::put_annotation` in the body",
            ));
        }
        let found = f.sig.inputs.iter().any(|arg| match arg {
            FnArg::Typed(t) => matches!(&*t.pat, Pat::Ident(p) if p.ident == *name),
            FnArg::Receiver(_) => false,
        });
        if !found {
            return Err(syn::Error::new(
                name.span(),
                format!("`{name}` is not a parameter of this function"),
            ));
        }
    }
    Ok(())
}

/// Records the chosen parameters, first thing in the subsegment.
fn prologue(options: &Options) -> TokenStream {
    let annotate = options.annotate.iter().map(|p| {
        let key = p.to_string();
        quote_spanned!(p.span()=> ::xray_lambda::__private::annotate(#key, &#p);)
    });
    let metadata = options.metadata.iter().map(|p| {
        let key = p.to_string();
        quote_spanned!(p.span()=> ::xray_lambda::__private::put_metadata(#key, &#p);)
    });
    quote!(#(#annotate)* #(#metadata)*)
}

/// The closure that records the outcome: a returned `Err`, and with `response` the value.
fn hook(options: &Options, output: Option<&Type>) -> TokenStream {
    let kind = options.error_kind.tokens();
    let result = output.is_some_and(is_result);
    let record_err = result.then(|| {
        quote! {
            if let ::core::result::Result::Err(__xray_e) = __xray_out {
                #[allow(unused_imports)]
                use ::xray_lambda::__private::{
                    ViaBoxedError as _, ViaDebug as _, ViaDisplay as _, ViaStdError as _, ViaTypeName as _,
                };
                (&&&&::xray_lambda::__private::ErrorView(__xray_e)).xray_record(__xray_outcome, #kind);
            }
        }
    });
    let response = options.response.then(|| {
        if result {
            quote! {
                if let ::core::result::Result::Ok(__xray_v) = __xray_out {
                    __xray_outcome.response(__xray_v);
                }
            }
        } else {
            quote!(__xray_outcome.response(__xray_out);)
        }
    });
    quote! {
        |__xray_outcome: &::xray_lambda::__private::Outcome<'_>, __xray_out| {
            let _ = (&__xray_outcome, &__xray_out);
            #record_err
            #response
        }
    }
}

/// Whether the type is spelled `…Result<…>` (`Result`, `io::Result`, `anyhow::Result`).
fn is_result(t: &Type) -> bool {
    match t {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        Type::Paren(p) => is_result(&p.elem),
        Type::Group(g) => is_result(&g.elem),
        _ => false,
    }
}

fn contains_impl(t: &Type) -> bool {
    t.to_token_stream()
        .into_iter()
        .any(|tt| matches!(&tt, proc_macro2::TokenTree::Ident(i) if i == "impl"))
}

/// For a fn whose body ends in `Box::pin(async move { … })` and whose return type is
/// `Pin<Box<dyn Future<Output = T> …>>` (what `#[async_trait]` makes), `Some(Some(T))`.
fn boxed_future_output(f: &ItemFn) -> Option<Option<Type>> {
    boxed_async_block(&f.block)?;
    let ReturnType::Type(_, t) = &f.sig.output else {
        return Some(None);
    };
    Some(future_output(t))
}

fn boxed_async_block(block: &Block) -> Option<&syn::ExprAsync> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    if func.path.segments.last()?.ident != "pin" || call.args.len() != 1 {
        return None;
    }
    match call.args.first()? {
        Expr::Async(a) => Some(a),
        _ => None,
    }
}

fn future_output(t: &Type) -> Option<Type> {
    let mut found = None;
    find_output(t, &mut found);
    found
}

fn find_output(t: &Type, found: &mut Option<Type>) {
    match t {
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(args) = &seg.arguments {
                    for arg in &args.args {
                        if let GenericArgument::Type(inner) = arg {
                            find_output(inner, found);
                        }
                    }
                }
            }
        }
        Type::TraitObject(o) => {
            for b in &o.bounds {
                if let TypeParamBound::Trait(tb) = b {
                    for seg in &tb.path.segments {
                        if let PathArguments::AngleBracketed(args) = &seg.arguments {
                            for arg in &args.args {
                                if let GenericArgument::AssocType(a) = arg {
                                    if a.ident == "Output" {
                                        *found = Some(a.ty.clone());
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Type::Paren(p) => find_output(&p.elem, found),
        Type::Group(g) => find_output(&g.elem, found),
        _ => {}
    }
}

/// Replaces the `async move { … }` in the body's final `Box::pin(…)` with the captured
/// future.
fn instrument_boxed_future(
    block: &mut Block,
    prologue: &TokenStream,
    hook: &TokenStream,
) -> syn::Result<()> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() else {
        return Ok(());
    };
    let Some(arg) = call.args.first_mut() else {
        return Ok(());
    };
    let Expr::Async(async_block) = arg else {
        return Ok(());
    };
    let capture = async_block.capture;
    let stmts = &async_block.block.stmts;
    let wrapped: Expr = syn::parse2(quote! {
        ::xray_lambda::__private::capture_future(&__XRAY_SITE, async #capture { #prologue #(#stmts)* }, #hook)
    })?;
    *arg = wrapped;
    Ok(())
}
