//! Runs a task at a given instant unless it is cancelled first: what sends an
//! invocation's trace before Lambda's deadline.
//!
//! One thread for the whole process, started with the first watch, not one per
//! invocation, and not a task on the async runtime: a handler that blocks every
//! runtime thread, even a current-thread runtime's only one, is still flushed. A watch
//! costs a lock and a map insert; the thread is woken only when a watch is due sooner
//! than its next planned wake-up (at most [`IDLE`] away), so registering an invocation's
//! deadline, seconds ahead, normally wakes nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The longest the watch thread sleeps without looking at its watches.
const IDLE: Duration = Duration::from_secs(1);

type Task = Box<dyn FnOnce() + Send>;

/// A pending watch; dropping it cancels the task if it has not run yet.
#[derive(Debug)]
pub(crate) struct Watch {
    key: (Instant, u64),
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(w) = watcher() {
            w.lock().tasks.remove(&self.key);
        }
    }
}

/// Runs `task` on the watch thread at `when`, unless the returned [`Watch`] is dropped
/// first. `None` when the thread cannot be started (logged once).
pub(crate) fn at(when: Instant, task: impl FnOnce() + Send + 'static) -> Option<Watch> {
    let w = watcher()?;
    let mut state = w.lock();
    state.next_id += 1;
    let key = (when, state.next_id);
    state.tasks.insert(key, Box::new(task));
    if state.planned.is_none_or(|p| when < p) {
        w.wake.notify_one();
    }
    Some(Watch { key })
}

#[derive(Default)]
struct State {
    tasks: BTreeMap<(Instant, u64), Task>,
    next_id: u64,
    /// When the thread wakes next on its own; `None` while it is busy.
    planned: Option<Instant>,
}

struct Watcher {
    state: Mutex<State>,
    wake: Condvar,
}

impl Watcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            state.planned = None;
            let now = Instant::now();
            let due = match state.tasks.first_key_value() {
                Some((&key, _)) if key.0 <= now => state.tasks.remove(&key),
                _ => None,
            };
            if let Some(task) = due {
                drop(state);
                // A task that panics must not take the watch thread with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                state = self.lock();
                continue;
            }
            let next = state
                .tasks
                .first_key_value()
                .map_or(now + IDLE, |(k, _)| k.0.min(now + IDLE));
            state.planned = Some(next);
            state = self
                .wake
                .wait_timeout(state, next.saturating_duration_since(now))
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
    }
}

fn watcher() -> Option<&'static Arc<Watcher>> {
    static WATCHER: OnceLock<Option<Arc<Watcher>>> = OnceLock::new();
    WATCHER
        .get_or_init(|| {
            let w = Arc::new(Watcher {
                state: Mutex::default(),
                wake: Condvar::new(),
            });
            let thread = w.clone();
            match std::thread::Builder::new()
                .name("xray-lambda-deadline".into())
                .stack_size(256 * 1024)
                .spawn(move || thread.run())
            {
                Ok(_) => Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the X-Ray deadline thread; traces will not be sent before a timeout");
                    None
                }
            }
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn tasks_run_at_their_time_in_order_unless_cancelled() {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let send = |label: &'static str| {
            let tx = tx.clone();
            move || tx.send((label, Instant::now())).unwrap()
        };
        let _late = at(ms(120), send("late")).unwrap();
        let cancelled = at(ms(60), send("cancelled")).unwrap();
        let _early = at(ms(30), send("early")).unwrap();
        drop(cancelled);
        let (first, t1) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let (second, t2) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((first, second), ("early", "late"));
        assert!(t1 >= ms(30) && t2 >= ms(120));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn a_panicking_task_does_not_stop_the_thread() {
        let now = Instant::now();
        let _bad = at(now, || panic!("task failed")).unwrap();
        let (tx, rx) = mpsc::channel();
        let _good = at(now + Duration::from_millis(20), move || {
            tx.send(()).unwrap()
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}
