//! Panics as exceptions: what the panic hook saw of the panic now unwinding on this
//! thread, handed to the first subsegment the panic unwinds through, and to no other.
//!
//! A subsegment guard dropped during unwinding has no payload to read, only the hook's
//! record. That record belongs to one unwind: it is taken (never copied) by the first
//! subsegment that records the panic, and forgotten as soon as tracing code runs on the
//! thread while nothing unwinds. An unwind that did not run the hook (`resume_unwind`,
//! or a hook installed after ours that does not chain to it) therefore never inherits
//! an earlier panic's message; it is recorded with [`UNSEEN_MESSAGE`]. The subsegments a
//! panic then unwinds through refer to that first exception by id (see `Node`).

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::document::{Exception, StackFrame};
use crate::exception;

/// `type` of an exception recorded for a panic.
pub(crate) const PANIC_TYPE: &str = "panic";
/// The message of a panic whose payload and hook record were both out of sight.
pub(crate) const UNSEEN_MESSAGE: &str =
    "panic (message not seen: resumed with resume_unwind, or raised while another panic hook replaced this one)";

#[derive(Debug)]
struct Record {
    message: String,
    file: String,
    line: u32,
}

thread_local! {
    static LAST: RefCell<Option<Record>> = const { RefCell::new(None) };
}

/// Whether the hook ever ran in this process: until then there is no record to forget,
/// and subsegments need not look.
static HOOK_RAN: AtomicBool = AtomicBool::new(false);

/// The exception for the panic unwinding now: its message from `payload` when the caller
/// caught one, else from the hook's record; its location from the hook's record when
/// that record is this panic's. Takes the record.
pub(crate) fn exception(payload: Option<&(dyn Any + Send)>) -> Exception {
    let record = take();
    let (message, record) = match (payload, record) {
        (Some(p), r) => {
            let message = message(p);
            // A record with another message is some other, earlier panic's.
            let r = r.filter(|r| r.message == message);
            (message, r)
        }
        (None, Some(r)) => (r.message.clone(), Some(r)),
        (None, None) => (UNSEEN_MESSAGE.to_owned(), None),
    };
    let at = record.map(|r| StackFrame {
        path: r.file,
        line: r.line,
        label: PANIC_TYPE.into(),
    });
    exception::exception(PANIC_TYPE.into(), message, at)
}

/// Forgets the hook's record if no panic is unwinding: whatever it describes is over.
/// Called whenever a subsegment begins, so a record never outlives its unwind by more
/// than the time until tracing code next runs.
pub(crate) fn forget_finished() {
    if HOOK_RAN.load(Ordering::Relaxed) && !std::thread::panicking() {
        let _ = LAST.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                *r = None;
            }
        });
    }
}

fn take() -> Option<Record> {
    LAST.try_with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.take()))
        .ok()
        .flatten()
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Chains a panic hook that remembers where the latest panic on each thread happened, so
/// the subsegments it unwinds through can record the location. The previous hook still
/// runs, so panics print and behave exactly as before.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let record = Record {
                message: message(info.payload()),
                file: info
                    .location()
                    .map(|l| l.file().to_owned())
                    .unwrap_or_default(),
                line: info.location().map(|l| l.line()).unwrap_or(0),
            };
            HOOK_RAN.store(true, Ordering::Relaxed);
            // `try_with`: the hook may run while the thread is being torn down.
            let _ = LAST.try_with(|p| {
                if let Ok(mut slot) = p.try_borrow_mut() {
                    *slot = Some(record);
                }
            });
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, resume_unwind};

    #[test]
    fn a_caught_panic_carries_its_message_and_location() {
        install_hook();
        let payload = catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        let ex = exception(Some(&*payload));
        assert_eq!(ex.kind, "panic");
        assert_eq!(ex.message, "boom 7");
        assert_eq!(ex.stack[0].path, file!());
        assert!(ex.stack[0].line > 0);
    }

    #[test]
    fn a_record_is_taken_once() {
        install_hook();
        let payload = catch_unwind(|| panic!("first")).unwrap_err();
        assert_eq!(exception(Some(&*payload)).stack.len(), 1);
        // The same payload again: the record is gone, so no location is claimed.
        let again = exception(Some(&*payload));
        assert_eq!(again.message, "first");
        assert!(again.stack.is_empty());
        assert_eq!(exception(None).message, UNSEEN_MESSAGE);
    }

    #[test]
    fn a_payload_never_takes_another_panics_location() {
        install_hook();
        let _ = catch_unwind(|| panic!("earlier"));
        let resumed = catch_unwind(|| resume_unwind(Box::new("later"))).unwrap_err();
        let ex = exception(Some(&*resumed));
        assert_eq!(ex.message, "later");
        assert!(ex.stack.is_empty(), "{:?}", ex.stack);
    }

    #[test]
    fn a_finished_panic_is_forgotten() {
        install_hook();
        let _ = catch_unwind(|| panic!("over"));
        forget_finished();
        assert_eq!(exception(None).message, UNSEEN_MESSAGE);
    }
}
