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
    let hook = hook(&options);
    let output = match &f.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, t) => Some((**t).clone()),
    };

    let body = if f.sig.asyncness.is_some() {
        let stmts = &f.block.stmts;
        let fake_return = output.as_ref().and_then(fake_return);
        let future = quote!(async move { #prologue #fake_return #(#stmts)* });
        quote! {{
            #site
            ::xray_lambda::__private::capture_future(&__XRAY_SITE, #future, #hook).await
        }}
    } else if returned_async_block(&f.block).is_some() {
        // A fn whose body ends in the future it returns: `async move { … }`, or
        // `Box::pin(async move { … })` (what `#[async_trait]` makes of an `async fn`).
        // The work happens when that future runs, so it is what gets instrumented, not
        // its construction.
        let fake_return = output
            .as_ref()
            .and_then(future_output)
            .as_ref()
            .and_then(fake_return);
        instrument_returned_future(&mut f.block, &prologue, fake_return, &hook)?;
        let stmts = &f.block.stmts;
        quote! {{ #site #(#stmts)* }}
    } else {
        let block = &f.block;
        match output.as_ref().filter(|t| !matches!(t, Type::Never(_))) {
            // Only a value is worth inspecting: whether it is a `Result` is decided by
            // the value's type, not by how the return type is spelled.
            Some(t) => {
                let call = match type_hint(t) {
                    Some(hint) => {
                        quote!(::xray_lambda::__private::call::<#hint, _>(move || #block);)
                    }
                    None => quote!(::xray_lambda::__private::call(move || #block);),
                };
                // `impl Trait` cannot be named: tie the output to the function's return
                // type instead, so the hook sees the concrete type.
                let same_type = contains_impl(t).then(|| {
                    quote! {
                        if let ::core::option::Option::Some(__xray_same) = ::xray_lambda::__private::none_like(&__xray_out) {
                            return __xray_same;
                        }
                    }
                });
                quote! {{
                    #site
                    let __xray_guard = ::xray_lambda::__private::begin(&__XRAY_SITE);
                    #prologue
                    let __xray_out = #call
                    #same_type
                    ::xray_lambda::__private::complete(&__xray_guard, &__XRAY_SITE, &__xray_out, #hook);
                    __xray_out
                }}
            }
            None => {
                let stmts = &block.stmts;
                quote! {{
                    #site
                    let __xray_guard = ::xray_lambda::__private::begin(&__XRAY_SITE);
                    #prologue
                    #(#stmts)*
                }}
            }
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

/// The closure that records the outcome: a returned `Err`, and with `response` the value
/// (the `Ok` value of a `Result`). Both are told apart by the value's type.
fn hook(options: &Options) -> TokenStream {
    let kind = options.error_kind.tokens();
    let response = options.response.then(|| {
        quote! {
            if let ::core::option::Option::Some(__xray_v) =
                (&&::xray_lambda::__private::ResultView(__xray_out)).xray_ok()
            {
                __xray_outcome.response(__xray_v);
            }
        }
    });
    quote! {
        |__xray_outcome: &::xray_lambda::__private::Outcome<'_>, __xray_out| {
            #[allow(unused_imports)]
            use ::xray_lambda::__private::{
                ViaBoxedError as _, ViaDebug as _, ViaDisplay as _, ViaResult as _, ViaStdError as _,
                ViaTypeName as _, ViaValue as _,
            };
            if let ::core::option::Option::Some(__xray_e) =
                (&&::xray_lambda::__private::ResultView(__xray_out)).xray_err()
            {
                (&&&&::xray_lambda::__private::ErrorView(__xray_e)).xray_record(__xray_outcome, #kind);
            }
            #response
        }
    }
}

/// `if false { return <a value of type t>; }`, first thing in an async block: fixes the
/// block's output type before its body is checked, so `?` in it knows what to convert
/// errors into.
fn fake_return(t: &Type) -> Option<TokenStream> {
    let hint = type_hint(t)?;
    Some(quote! {
        #[allow(unreachable_code, clippy::diverging_sub_expression)]
        if false {
            let __xray_type_hint: #hint = loop {};
            return __xray_type_hint;
        }
    })
}

/// The return type as it can be written in a body: each `impl Trait` (which cannot be)
/// becomes `_`. `None` when nothing of it is left to say.
fn type_hint(t: &Type) -> Option<Type> {
    struct Infer;
    impl syn::visit_mut::VisitMut for Infer {
        fn visit_type_mut(&mut self, t: &mut Type) {
            if let Type::ImplTrait(i) = t {
                *t = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](i.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, t);
            }
        }
    }
    let mut hint = t.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Infer, &mut hint);
    (!matches!(hint, Type::Infer(_))).then_some(hint)
}

fn contains_impl(t: &Type) -> bool {
    t.to_token_stream()
        .into_iter()
        .any(|tt| matches!(&tt, proc_macro2::TokenTree::Ident(i) if i == "impl"))
}

/// The async block a fn body ends in: `async move { … }` or `Box::pin(async move { … })`.
fn returned_async_block(block: &Block) -> Option<&syn::ExprAsync> {
    match block.stmts.last() {
        Some(Stmt::Expr(Expr::Async(a), None)) => Some(a),
        Some(Stmt::Expr(Expr::Call(call), None)) => {
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
        _ => None,
    }
}

/// The `Output` of a returned future type: `impl Future<Output = T>`, or
/// `Pin<Box<dyn Future<Output = T> …>>`.
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
        Type::TraitObject(syn::TypeTraitObject { bounds, .. })
        | Type::ImplTrait(syn::TypeImplTrait { bounds, .. }) => {
            for b in bounds {
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

/// Replaces the async block the body ends in with the captured future.
fn instrument_returned_future(
    block: &mut Block,
    prologue: &TokenStream,
    fake_return: Option<TokenStream>,
    hook: &TokenStream,
) -> syn::Result<()> {
    let slot = match block.stmts.last_mut() {
        Some(Stmt::Expr(e @ Expr::Async(_), None)) => e,
        Some(Stmt::Expr(Expr::Call(call), None)) => match call.args.first_mut() {
            Some(e @ Expr::Async(_)) => e,
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    let Expr::Async(async_block) = &*slot else {
        return Ok(());
    };
    let capture = async_block.capture;
    let stmts = &async_block.block.stmts;
    let wrapped: Expr = syn::parse2(quote! {
        ::xray_lambda::__private::capture_future(
            &__XRAY_SITE,
            async #capture { #prologue #fake_return #(#stmts)* },
            #hook,
        )
    })?;
    *slot = wrapped;
    Ok(())
}
