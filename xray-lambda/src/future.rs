//! Futures that carry the trace: [`FutureExt`].

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::context::{self, open_subsegment, JustEnd, Opened, Scope};

/// Extension methods that carry the trace through futures.
pub trait FutureExt: Future + Sized {
    /// Runs this future in a subsegment named `name`, opened when it is first polled
    /// (as a child of whatever is current then) and ended when it completes. A panic is
    /// recorded as a fault; dropping it unfinished ends the subsegment marked incomplete.
    ///
    /// Each branch of a `join!` or `select!` that should be its own subsegment needs
    /// this (or `#[capture]`): guards from `begin_subsegment` held across `.await` in
    /// two branches cannot tell the branches apart.
    fn in_subsegment(self, name: impl Into<Cow<'static, str>>) -> InSubsegment<Self> {
        InSubsegment {
            scope: Scope::lazy(self, name.into(), open_subsegment, JustEnd),
        }
    }

    /// Runs this future in a new segment named `name` (a new trace), opened when it is
    /// first polled and ended, and sent, when it completes: the async form of
    /// [`begin_segment`](crate::begin_segment), for code outside Lambda. Inside Lambda
    /// it is refused the same way, and the future runs untraced.
    fn in_segment(self, name: impl Into<Cow<'static, str>>) -> InSegment<Self> {
        InSegment {
            scope: Scope::lazy(self, name.into(), crate::segment::open, JustEnd),
        }
    }

    /// Runs this future under the subsegment that is current *now*: use it to carry the
    /// trace into `tokio::spawn`, whose tasks otherwise start with no trace.
    fn in_current_trace(self) -> InCurrentTrace<Self> {
        InCurrentTrace {
            scope: Scope::new(
                self,
                Opened {
                    context: context::current(),
                    node: None,
                },
                JustEnd,
            ),
        }
    }
}

impl<F: Future> FutureExt for F {}

macro_rules! scoped_future {
    ($(#[$doc:meta])* $name:ident) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            #[must_use = "futures do nothing unless polled"]
            #[derive(Debug)]
            pub struct $name<F> {
                #[pin]
                scope: Scope<F, JustEnd>,
            }
        }

        impl<F: Future> Future for $name<F> {
            type Output = F::Output;
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
                self.project().scope.poll(cx)
            }
        }
    };
}

scoped_future!(
    /// A future running in its own subsegment; see [`FutureExt::in_subsegment`].
    InSubsegment
);
scoped_future!(
    /// A future running in its own segment; see [`FutureExt::in_segment`].
    InSegment
);
scoped_future!(
    /// A future carrying the trace it was made in; see [`FutureExt::in_current_trace`].
    InCurrentTrace
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::test_support::{by_name, within, Daemon};
    use crate::context::{Node, Trace};
    use crate::id::TraceId;
    use crate::{begin_subsegment, Subsegment};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn futures_keep_their_own_context_across_threads() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let work = async {
            let a = async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let _g = begin_subsegment("a_child");
                tokio::task::yield_now().await;
            }
            .in_subsegment("a");
            let b = async {
                tokio::task::yield_now().await;
                begin_subsegment("b_child").end();
            }
            .in_subsegment("b");
            tokio::join!(a, b);
            let spawned =
                tokio::spawn(async { begin_subsegment("spawned").end() }.in_current_trace());
            let orphan = tokio::spawn(async { begin_subsegment("orphan").is_recording() });
            spawned.await.unwrap();
            assert!(!orphan.await.unwrap());
        };
        within(&facade, || work.in_current_trace()).await;
        let docs = d.documents();
        let fid = facade.id().to_string();
        let a = by_name(&docs, "a");
        let b = by_name(&docs, "b");
        assert_eq!(a["parent_id"], fid);
        assert_eq!(b["parent_id"], fid);
        assert_eq!(by_name(&docs, "a_child")["parent_id"], a["id"]);
        assert_eq!(by_name(&docs, "b_child")["parent_id"], b["id"]);
        assert_eq!(by_name(&docs, "spawned")["parent_id"], fid);
        assert_eq!(docs.len(), 5);
    }

    #[tokio::test]
    async fn dropped_futures_end_their_subsegment_marked() {
        let d = Daemon::new();
        let facade = d.facade(true);
        let mut slow = Box::pin(
            async {
                let _child = begin_subsegment("child");
                std::future::pending::<()>().await
            }
            .in_subsegment("slow"),
        );
        within(&facade, || {
            async {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(10), &mut slow).await;
            }
            .in_current_trace()
        })
        .await;
        drop(slow);
        let docs = d.documents();
        let names: Vec<_> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["child", "slow"], "children are sent before parents");
        assert_eq!(
            by_name(&docs, "slow")["metadata"]["xray_lambda"]["incomplete"],
            "cancelled: future dropped before completion"
        );
    }

    /// A guard held across `.await` by the future `block_on` runs stays that future's:
    /// the other tasks the same thread polls meanwhile do not work under it.
    #[test]
    fn tasks_on_the_same_thread_do_not_adopt_a_guard_held_across_await() {
        let d = Daemon::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let trace = Trace::new(TraceId::new(), "", true, Some(d.emitter.clone()), 100);
            let segment = Subsegment::enter(Node::segment(trace, "segment".into(), None).unwrap());
            let others: Vec<_> = (0..20)
                .map(|_| {
                    tokio::spawn(async {
                        tokio::task::yield_now().await;
                        begin_subsegment("unrelated").is_recording()
                    })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            for task in others {
                assert!(
                    !task.await.unwrap(),
                    "another task recorded under the segment"
                );
            }
            begin_subsegment("own").end();
            drop(segment);
        });
        let docs = d.documents();
        let names: Vec<_> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["own", "segment"]);
        assert_eq!(docs[0]["parent_id"], docs[1]["id"]);
    }
}
