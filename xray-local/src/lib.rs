//! Reading what the X-Ray daemon receives, without AWS: checking datagrams against the
//! wire format and AWS's schema ([`validate`]), the segments and subsegments a document
//! holds ([`document::flatten`]), traces as trees and a service map ([`trace`]), and
//! views of them ([`text`], [`html`], [`filter`]).
//!
//! The library behind the `xray-local` command, and what the project's tests read
//! documents with.

pub mod document;
pub mod filter;
pub mod html;
pub mod text;
pub mod trace;
pub mod validate;
