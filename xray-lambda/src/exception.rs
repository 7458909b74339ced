//! Turning Rust errors and panics into X-Ray exceptions.

use std::any::Any;
use std::error::Error;
use std::fmt::Debug;
use std::panic::Location;

use crate::document::{Exception, StackFrame};
use crate::id::SegmentId;

/// Longest `source()` chain followed, so a cyclic or runaway chain cannot stall a handler.
const MAX_CHAIN: usize = 32;
/// `type` when nothing better is known.
const UNKNOWN_TYPE: &str = "Error";
/// Longest exception `type` kept: type names of deeply generic types, and the leading
/// word of a `Debug` text, can be arbitrarily long.
const MAX_TYPE_CHARS: usize = 256;

/// The exceptions for `err` and its `source()` chain, outermost first, each pointing at
/// the next through `cause`. `at` becomes the first exception's stack frame.
pub(crate) fn from_error<E: Error + ?Sized>(err: &E, at: Option<StackFrame>) -> Vec<Exception> {
    let top_type = short_type_name(std::any::type_name::<E>())
        .unwrap_or_else(|| type_from_debug(&format!("{err:?}")));
    chain(top_type, err.to_string(), err.source(), at)
}

/// [`from_error`] for an error known only as a trait object.
pub(crate) fn from_dyn_error(
    err: &(dyn Error + 'static),
    at: Option<StackFrame>,
) -> Vec<Exception> {
    chain(type_of_dyn(err), err.to_string(), err.source(), at)
}

/// The single exception for an error that is not a `std::error::Error`: its type name
/// and text.
pub(crate) fn from_text(
    type_name: &str,
    message: String,
    at: Option<StackFrame>,
) -> Vec<Exception> {
    let kind = short_type_name(type_name).unwrap_or_else(|| UNKNOWN_TYPE.into());
    vec![exception(kind, message, at)]
}

/// The single exception for an error known only by its text (a `tracing` field): its
/// type is `kind` when given, else the leading identifier of the text when it reads
/// like a `Debug` of a type (`NotFound { id: 7 }` → `NotFound`).
#[cfg(feature = "tracing-layer")]
pub(crate) fn from_formatted(message: String, kind: Option<&str>) -> Vec<Exception> {
    let kind = kind.map_or_else(|| type_from_debug(&message), str::to_owned);
    vec![exception(kind, message, None)]
}

/// The exception for an error a service answered with: its error code and message.
#[cfg(feature = "aws-sdk")]
pub(crate) fn remote(code: String, message: String) -> Exception {
    Exception {
        remote: true,
        ..exception(code, message, None)
    }
}

/// The stack frame of a `record_error` call.
pub(crate) fn caller_frame(at: &Location<'_>) -> StackFrame {
    StackFrame {
        path: at.file().to_owned(),
        line: at.line(),
        label: "record_error".into(),
    }
}

fn chain(
    top_type: String,
    message: String,
    mut next: Option<&(dyn Error + 'static)>,
    at: Option<StackFrame>,
) -> Vec<Exception> {
    let mut out = vec![exception(top_type, message, at)];
    while let Some(src) = next {
        if out.len() >= MAX_CHAIN {
            break;
        }
        out.push(exception(type_of_dyn(src), src.to_string(), None));
        next = src.source();
    }
    for i in 1..out.len() {
        out[i - 1].cause = Some(out[i].id);
    }
    out
}

/// The exceptions for a handler's error of any type the Lambda runtime accepts. The
/// boxed errors `lambda_runtime::Error` and `Box<dyn Error>` give their full chain;
/// other types give their type name and `Debug` text.
pub(crate) fn from_handler_error<E: Debug + 'static>(err: &E) -> Vec<Exception> {
    let any = err as &dyn Any;
    if let Some(e) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return from_dyn_error(&**e, None);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return from_dyn_error(&**e, None);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn Error>>() {
        return from_dyn_error(&**e, None);
    }
    if let Some(e) = any.downcast_ref::<std::io::Error>() {
        return from_error(e, None);
    }
    if let Some(d) = any.downcast_ref::<lambda_runtime::Diagnostic>() {
        let kind = short_type_name(&d.error_type).unwrap_or_else(|| d.error_type.clone());
        return vec![exception(kind, d.error_message.clone(), None)];
    }
    let message = if let Some(s) = any.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = any.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else {
        format!("{err:?}")
    };
    let type_name = std::any::type_name::<E>();
    let plain_text = type_name == std::any::type_name::<String>() || type_name == "&str";
    from_text(
        if plain_text { UNKNOWN_TYPE } else { type_name },
        message,
        None,
    )
}

pub(crate) fn exception(mut kind: String, message: String, at: Option<StackFrame>) -> Exception {
    let keep = crate::sanitize::truncate_chars(&kind, MAX_TYPE_CHARS).len();
    kind.truncate(keep);
    Exception {
        id: SegmentId::random(),
        message,
        kind,
        remote: false,
        cause: None,
        stack: at.into_iter().collect(),
        truncated: None,
    }
}

/// `my_crate::errors::Wrapper<alloc::string::String>` → `Wrapper<String>`. A type
/// called just `Error` keeps its module: `std::io::error::Error` → `io::Error`,
/// `serde_json::error::Error` → `serde_json::Error`. `None` for trait objects, whose
/// real type only the value can tell.
pub(crate) fn short_type_name(full: &str) -> Option<String> {
    if full.starts_with("dyn ") || full.contains("<dyn ") || full.starts_with("&dyn ") {
        return None;
    }
    let mut out = String::with_capacity(full.len());
    let mut path_start = 0;
    for (i, c) in full.char_indices() {
        if matches!(c, '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | ';' | '&') {
            push_short_path(&mut out, &full[path_start..i]);
            out.push(c);
            path_start = i + 1;
        }
    }
    push_short_path(&mut out, &full[path_start..]);
    Some(out)
}

/// The last segment of a `::` path, with its module when it is just `Error`.
fn push_short_path(out: &mut String, path: &str) {
    let mut segments = path.rsplit("::");
    let last = segments.next().unwrap_or_default();
    if last == UNKNOWN_TYPE {
        if let Some(module) = segments.find(|m| *m != "error") {
            out.push_str(module);
            out.push_str("::");
        }
    }
    out.push_str(last);
}

/// The type of an error seen only as `dyn Error`: known std types by downcast, else the
/// leading identifier of its `Debug` text (`ParseIntError { .. }` → `ParseIntError`).
fn type_of_dyn(err: &(dyn Error + 'static)) -> String {
    if err.is::<std::io::Error>() {
        return short_type_name(std::any::type_name::<std::io::Error>()).unwrap_or_default();
    }
    type_from_debug(&format!("{err:?}"))
}

fn type_from_debug(debug: &str) -> String {
    let ident: &str = match debug.find(|c: char| !(c.is_alphanumeric() || c == '_')) {
        Some(end) => {
            let rest = &debug[end..];
            if rest.starts_with('(') || rest.starts_with(" {") {
                &debug[..end]
            } else {
                ""
            }
        }
        None => debug,
    };
    if ident
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
    {
        ident.to_owned()
    } else {
        UNKNOWN_TYPE.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Outer(Middle);
    #[derive(Debug)]
    struct Middle {
        inner: std::num::ParseIntError,
    }
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("could not load user")
        }
    }
    impl fmt::Display for Middle {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bad id")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }
    impl Error for Middle {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.inner)
        }
    }

    fn chain() -> Outer {
        Outer(Middle {
            inner: "x".parse::<u32>().unwrap_err(),
        })
    }

    #[test]
    fn source_chain_becomes_linked_exceptions() {
        let ex = from_error(&chain(), Some(caller_frame(Location::caller())));
        assert_eq!(ex.len(), 3);
        assert_eq!(ex[0].kind, "Outer");
        assert_eq!(ex[0].message, "could not load user");
        assert_eq!(ex[1].kind, "Middle");
        assert_eq!(ex[2].kind, "ParseIntError");
        assert_eq!(ex[0].cause, Some(ex[1].id));
        assert_eq!(ex[1].cause, Some(ex[2].id));
        assert_eq!(ex[2].cause, None);
        assert_eq!(ex[0].stack[0].path, file!());
    }

    #[test]
    fn boxed_handler_errors_keep_their_chain() {
        let boxed: lambda_runtime::Error = Box::new(chain());
        let ex = from_handler_error(&boxed);
        assert_eq!(ex.len(), 3);
        assert_eq!(ex[0].kind, "Outer");
        assert_eq!(ex[0].message, "could not load user");
    }

    #[test]
    fn other_handler_errors() {
        let ex = from_handler_error(&String::from("plain"));
        assert_eq!(
            (ex[0].kind.as_str(), ex[0].message.as_str()),
            ("Error", "plain")
        );
        let d = lambda_runtime::Diagnostic {
            error_type: "my::Kind".into(),
            error_message: "m".into(),
        };
        let ex = from_handler_error(&d);
        assert_eq!((ex[0].kind.as_str(), ex[0].message.as_str()), ("Kind", "m"));
        #[derive(Debug)]
        #[allow(dead_code)]
        enum Custom {
            Invalid { field: &'static str },
        }
        let ex = from_handler_error(&Custom::Invalid { field: "email" });
        assert_eq!(ex[0].kind, "Custom");
        assert_eq!(ex[0].message, r#"Invalid { field: "email" }"#);
    }

    #[test]
    fn type_names() {
        assert_eq!(
            short_type_name("a::b::Wrapper<alloc::string::String, c::D>").unwrap(),
            "Wrapper<String, D>"
        );
        assert_eq!(short_type_name("dyn core::error::Error + Send"), None);
        assert_eq!(
            short_type_name("std::io::error::Error").unwrap(),
            "io::Error"
        );
        assert_eq!(
            short_type_name("serde_json::error::Error").unwrap(),
            "serde_json::Error"
        );
        assert_eq!(short_type_name("Error").unwrap(), "Error");
        assert_eq!(
            short_type_name("core::result::Result<u8, core::fmt::Error>").unwrap(),
            "Result<u8, fmt::Error>"
        );
        assert_eq!(
            type_from_debug("ParseIntError { kind: InvalidDigit }"),
            "ParseIntError"
        );
        assert_eq!(type_from_debug("NotFound(\"x\")"), "NotFound");
        assert_eq!(type_from_debug("Timeout"), "Timeout");
        assert_eq!(type_from_debug("\"quoted\""), "Error");
        assert_eq!(type_from_debug("Custom { kind: Other }"), "Custom");
    }

    #[test]
    fn long_types_are_cut() {
        // A `Debug` text that is one long word: its type, seen as `dyn Error`, is that word.
        struct Shouting;
        impl fmt::Debug for Shouting {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&"A".repeat(100_000))
            }
        }
        impl fmt::Display for Shouting {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("loud")
            }
        }
        impl Error for Shouting {}
        let ex = from_dyn_error(&Shouting, None);
        assert_eq!(ex[0].kind, "A".repeat(MAX_TYPE_CHARS));
        let ex = from_text(&"a".repeat(100_000), "m".into(), None);
        assert_eq!(ex[0].kind.chars().count(), MAX_TYPE_CHARS);
    }

    #[test]
    fn cyclic_chains_are_bounded() {
        #[derive(Debug)]
        struct Loop;
        impl fmt::Display for Loop {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("loop")
            }
        }
        static LOOP: Loop = Loop;
        impl Error for Loop {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&LOOP)
            }
        }
        assert_eq!(from_error(&Loop, None).len(), MAX_CHAIN);
    }
}
