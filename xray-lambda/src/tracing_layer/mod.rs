//! [`XRayTracingLayer`]: `tracing` spans become subsegments, in the same context as
//! `#[capture]`, guards and the AWS interceptor.
//!
//! There is one context, this crate's: a recorded span gets a node, created under
//! whatever is current when the span is created, and entering the span makes that node
//! current for the code inside (as a traced future's poll does). So a span created
//! inside a `#[capture]` function is its child, a guard begun inside an entered span is
//! the span's child, and an `Instrumented` future moved to another task or thread keeps
//! its parent.
//!
//! A span the layer leaves out still carries the context it was created in, so a thread
//! that enters it with nothing current of its own (sqlx's SQLite worker, say) works
//! under that context.

mod entered;
mod fields;
mod last_new;
mod sql;
mod targets;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::context::{self, Node, Previous, Recording};

use entered::EnteredSpans;
use fields::{AnnotationFields, EventFields, Fields, RETURN_FIELD};
use sql::{Query, SqlSettings, SQLX_TARGET};
use targets::Targets;

/// A [`tracing_subscriber`] layer that turns `tracing` spans into X-Ray subsegments and
/// sqlx queries into SQL subsegments. Feature `tracing-layer` (on by default).
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(xray_lambda::XRayTracingLayer::new())
///     .init();
/// ```
///
/// # Spans
///
/// Every span the layer sees while an invocation is traced and sampled (or under a
/// [`begin_segment`](crate::begin_segment) segment) becomes a subsegment named after the
/// span: opened when the span is created, under whatever is current then (an entered
/// span, a `#[capture]` function, a guard), and ended when the span closes. For an
/// `#[instrument]`ed `async fn` that is when its future completes or is dropped.
///
/// - **Fields**: a field named `annotation.<key>` becomes the annotation `<key>`, and so
///   does any field listed with [`annotate_fields`](Self::annotate_fields) (indexed and
///   searchable; the same rules as [`put_annotation`](crate::put_annotation)). Every
///   other field, also one recorded later with `Span::record`, becomes metadata under
///   the namespace `tracing`; integers, floats and booleans keep their JSON type,
///   anything else is its text.
/// - **Errors**: an ERROR-level event with an `error` field, such as the one
///   `#[instrument(err)]` emits, marks the current subsegment as a fault, with the
///   error's message as the cause (its type from an `error.type` field, the error's own
///   chain when recorded as `&dyn Error`, or the leading identifier of its `Debug`
///   text). A `return` field (`#[instrument(ret)]`) becomes metadata `tracing.return`.
///   Other events are not recorded: logs belong in logs.
/// - **Left out**: spans of the crates traced another way or that are runtime plumbing:
///   `lambda_runtime`, `lambda_http`, the AWS SDK and smithy crates (`aws_*`; the
///   [`XRayInterceptor`](crate::aws::XRayInterceptor) records AWS calls), `hyper`,
///   `hyper_util`, `h2`, `tower`, `reqwest`, `rustls` and `tokio`. What happens inside
///   a span left out hangs under the nearest recorded one. Change the list with
///   [`ignore_target`](Self::ignore_target), [`record_target`](Self::record_target) and
///   [`ignore_no_targets`](Self::ignore_no_targets), or filter the layer as any other
///   with `.with_filter(...)`.
/// - **Cost**: without a sampled trace, a span costs the layer an atomic load and a
///   thread-local read, and no allocation. The layer wants spans of every level, so
///   `tracing` creates them all; if your other layers filter, filter this one too
///   (keeping `sqlx::query` at DEBUG for SQL subsegments), so that spans nobody wants
///   are not created:
///
/// ```
/// use tracing::Level;
/// use tracing_subscriber::filter::Targets;
/// use tracing_subscriber::prelude::*;
///
/// let xray = xray_lambda::XRayTracingLayer::new().with_filter(
///     Targets::new()
///         .with_default(Level::INFO)
///         .with_target("sqlx::query", Level::DEBUG),
/// );
/// let _subscriber = tracing_subscriber::registry().with(xray);
/// ```
///
/// # SQL from sqlx
///
/// Each `sqlx::query` event (sqlx logs every statement at DEBUG) becomes a subsegment
/// of its own, under whatever is current where the query ran: namespace `remote`,
/// `sql.sanitized_query` (the statement with its placeholders; bound values are never
/// recorded), `sql.database_type` when set with
/// [`sql_database_type`](Self::sql_database_type), the rows in metadata `sql`, and its
/// start time is the event's minus the query's `elapsed_secs`. It is named `SQL`
/// unless [`sql_name`](Self::sql_name) says otherwise.
///
/// sqlx only logs the statements it ran: its event carries no error, so a failed
/// query is not marked, and one that failed to prepare is not reported at all. The
/// error reaches X-Ray through the enclosing `#[instrument(err)]` span or `#[capture]`
/// function. A global filter must let the events through: with `RUST_LOG`, add
/// `sqlx::query=debug`. SQLite runs statements on a thread of its own, which knows
/// only the span current when the query was made: there the query hangs under the
/// nearest recorded span (put `#[instrument]` on the function making the query) rather
/// than under a `#[capture]` function or guard with no span of its own.
#[derive(Clone, Debug, Default)]
pub struct XRayTracingLayer {
    ignored: Targets,
    annotated: AnnotationFields,
    sql: SqlSettings,
}

/// Puts a node on a span of one type of subscriber (the one under a layer), given the
/// dispatcher: made when a layer joins a subscriber, the only time its type is known.
/// Gives false when the dispatcher has no subscriber of that type.
type Binder = fn(&Dispatch, &Id, &Arc<Node>) -> bool;

/// One per type of subscriber this layer joined (one in a real process).
static BINDERS: Mutex<Vec<Binder>> = Mutex::new(Vec::new());

/// Makes the span current now (the Lambda runtime's span for the invocation, entered
/// while the wrapper starts it) carry `handler`, so that a thread entering that span
/// with nothing current of its own (sqlx's SQLite worker) works under the handler.
/// Does nothing unless an [`XRayTracingLayer`] is in the current subscriber.
pub(crate) fn bind_current_span(handler: &Arc<Node>) {
    tracing::dispatcher::get_default(|dispatch| {
        if !dispatch.is::<XRayTracingLayer>() {
            return;
        }
        let current = dispatch.current_span();
        let Some(id) = current.id() else {
            return;
        };
        let binders = BINDERS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = binders.iter().any(|bind| bind(dispatch, id, handler));
    });
}

fn bind<S>(dispatch: &Dispatch, id: &Id, node: &Arc<Node>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return false;
    };
    if let Some(span) = subscriber.span(id) {
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<Tracked>().is_none() {
            extensions.insert(Tracked::new(node.clone(), Carries::Invocation));
        }
    }
    true
}

impl XRayTracingLayer {
    /// The layer with the default list of crates left out, no extra annotation fields,
    /// and SQL subsegments named `SQL`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves out spans whose target is `pattern` or under it (`my_app::noisy`), or,
    /// for a pattern ending in `*`, starts with it (`aws_*`).
    pub fn ignore_target(mut self, pattern: impl Into<Cow<'static, str>>) -> Self {
        self.ignored.add(pattern.into());
        self
    }

    /// Records spans of a target the default list leaves out (`"tower"`), by its pattern
    /// as listed.
    pub fn record_target(mut self, pattern: &str) -> Self {
        self.ignored.remove(pattern);
        self
    }

    /// Records spans of every target (this crate's own excepted).
    pub fn ignore_no_targets(mut self) -> Self {
        self.ignored.clear();
        self
    }

    /// Makes the span fields with these names annotations (besides the
    /// `annotation.<key>` fields), e.g. the arguments `#[instrument]` records:
    /// `.annotate_fields(["user_id"])`.
    pub fn annotate_fields<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<Cow<'static, str>>,
    {
        for name in names {
            self.annotated.add(name.into());
        }
        self
    }

    /// Names the subsegments of sqlx queries (default `SQL`): the database's name, say.
    pub fn sql_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.sql.name = name.into();
        self
    }

    /// Sets `sql.database_type` on the subsegments of sqlx queries (`"PostgreSQL"`).
    pub fn sql_database_type(mut self, database_type: impl Into<Cow<'static, str>>) -> Self {
        self.sql.database_type = Some(database_type.into());
        self
    }
}

/// [`Tracked`]s alive, process-wide (counted up as one is made, down as it is
/// dropped, so that one made but never put on a span leaves the count right): while
/// there are none, no span carries a node, and a thread with nothing current of its own
/// has nothing to look up.
static TRACKED: AtomicUsize = AtomicUsize::new(0);

/// What the layer keeps on a span.
struct Tracked {
    node: Arc<Node>,
    carries: Carries,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Carries {
    /// The span's own subsegment.
    Own,
    /// The context the span (left out) was created in.
    Context,
    /// The invocation's handler subsegment: the span is the Lambda runtime's for the
    /// invocation, created before the invocation's context existed.
    Invocation,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        TRACKED.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tracked {
    /// Counted in [`TRACKED`] for as long as it lives.
    fn new(node: Arc<Node>, carries: Carries) -> Self {
        TRACKED.fetch_add(1, Ordering::AcqRel);
        Tracked { node, carries }
    }

    /// What entering the span on this thread makes current, if anything.
    fn to_enter(&self) -> Option<Arc<Node>> {
        match self.carries {
            Carries::Own => Some(self.node.clone()),
            // A span left out lends its context only to a thread with none of its own.
            _ if matches!(context::recording(), Recording::Outside) => {
                Some(self.for_other_thread())
            }
            _ => None,
        }
    }

    /// What a thread with nothing current of its own works under inside this span. In
    /// the invocation's span, that is what the invocation's code made current last
    /// (the `#[capture]` function that handed a query to sqlx's SQLite worker).
    fn for_other_thread(&self) -> Arc<Node> {
        match self.carries {
            Carries::Own | Carries::Context => self.node.clone(),
            Carries::Invocation => self
                .node
                .trace()
                .last_current()
                .unwrap_or_else(|| self.node.clone()),
        }
    }
}

thread_local! {
    /// Set while the layer works on this thread: events it causes itself (this crate
    /// logs through `tracing`) are not recorded.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The spans entered on this thread whose node the layer made current, innermost
    /// last, with what was current before.
    static ENTERED: RefCell<EnteredSpans<(Arc<Node>, Previous)>> =
        const { RefCell::new(EnteredSpans::new()) };
}

/// Marks the layer busy on this thread until dropped; `None` when it already is.
struct Busy(());

impl Busy {
    #[inline]
    fn enter() -> Option<Busy> {
        BUSY.try_with(|b| (!b.replace(true)).then_some(Busy(())))
            .ok()
            .flatten()
    }
}

impl Drop for Busy {
    #[inline]
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
    }
}

/// The node the nearest span of `span`'s scope (itself first) carries, if still open.
fn tracked_in_scope<S>(
    span: Option<tracing_subscriber::registry::SpanRef<'_, S>>,
) -> Option<Arc<Node>>
where
    S: for<'a> LookupSpan<'a>,
{
    span?
        .scope()
        .find_map(|s| {
            s.extensions()
                .get::<Tracked>()
                .map(Tracked::for_other_thread)
        })?
        .nearest_open()
}

/// Where a new span or an event belongs.
enum Parent {
    /// What is current on this thread.
    Current(Arc<Node>),
    /// What a span of its scope carries (nothing is current on this thread).
    Scope(Arc<Node>),
}

impl Parent {
    fn node(&self) -> &Arc<Node> {
        match self {
            Parent::Current(n) | Parent::Scope(n) => n,
        }
    }

    fn into_node(self) -> Arc<Node> {
        match self {
            Parent::Current(n) | Parent::Scope(n) => n,
        }
    }

    /// What is current here, or else what the spans from `scope` carry. `None` without
    /// a sampled trace, at the cost of one thread-local read (and, with nothing current
    /// here, one atomic load while no span carries a context).
    fn find(scope: impl FnOnce() -> Option<Arc<Node>>) -> Option<Parent> {
        match context::recording() {
            Recording::Node(n) => Some(Parent::Current(n)),
            Recording::Quiet => None,
            Recording::Outside => {
                if TRACKED.load(Ordering::Acquire) == 0 {
                    return None;
                }
                scope().map(Parent::Scope)
            }
        }
    }
}

impl<S> Layer<S> for XRayTracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(parent) = Parent::find(|| {
            let from = match attrs.parent() {
                Some(p) => ctx.span(p),
                None if attrs.is_contextual() => ctx.lookup_current(),
                None => None,
            };
            tracked_in_scope(from)
        }) else {
            return;
        };
        let Some(_busy) = Busy::enter() else {
            return;
        };
        // An explicit parent that carries a context wins over what is current.
        let parent = match (&parent, attrs.parent()) {
            (Parent::Current(_), Some(p)) => tracked_in_scope(ctx.span(p))
                .map(Parent::Scope)
                .unwrap_or(parent),
            _ => parent,
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        // Held while the span's node is made (nothing else reads a span still being
        // created): one lock, and one lookup when the span has nothing yet.
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<Tracked>().is_some() {
            // Another instance of this layer in the same subscriber recorded it.
            return;
        }
        let metadata = attrs.metadata();
        let tracked = if self.ignored.ignores(metadata.target()) {
            match parent {
                // Its scope already tells a thread that enters it what to work under.
                Parent::Scope(_) => return,
                Parent::Current(node) => Tracked::new(node, Carries::Context),
            }
        } else {
            let Some(node) = Node::child(parent.into_node(), Cow::Borrowed(metadata.name()), false)
            else {
                return;
            };
            attrs.record(&mut Fields(
                |f: &tracing::field::Field, v: fields::FieldValue<'_>| {
                    self.annotated.record(&node, f, v)
                },
            ));
            Tracked::new(node, Carries::Own)
        };
        let own = (tracked.carries == Carries::Own).then(|| Arc::downgrade(&tracked.node));
        // Checked above, under the same lock: the span has none.
        extensions.insert(tracked);
        if let Some(node) = own {
            last_new::remember(id, node);
        }
    }

    fn on_layer(&mut self, _subscriber: &mut S) {
        context::follow_current();
        let mut binders = BINDERS.lock().unwrap_or_else(|e| e.into_inner());
        let binder: Binder = bind::<S>;
        if !binders.contains(&binder) {
            binders.push(binder);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if TRACKED.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some(_busy) = Busy::enter() else {
            return;
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        let node = match span.extensions().get::<Tracked>() {
            Some(t) if t.carries == Carries::Own => t.node.clone(),
            _ => return,
        };
        values.record(&mut Fields(
            |f: &tracing::field::Field, v: fields::FieldValue<'_>| {
                self.annotated.record(&node, f, v)
            },
        ));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if TRACKED.load(Ordering::Acquire) == 0 {
            return;
        }
        let node = match last_new::recall(id) {
            Some(node) => Some(node),
            None => {
                let Some(span) = ctx.span(id) else {
                    return;
                };
                let Some(node) = span.extensions().get::<Tracked>().map(Tracked::to_enter) else {
                    return;
                };
                node
            }
        };
        let mut entry = Some((
            id.clone(),
            node.map(|n| (n.clone(), context::enter_span(n))),
        ));
        let _ = ENTERED.try_with(|stack| {
            if let Ok(mut stack) = stack.try_borrow_mut() {
                if let Some((id, swapped)) = entry.take() {
                    stack.push(id, swapped);
                }
            }
        });
        if let Some((_, Some((node, previous)))) = entry {
            // Nowhere to remember what to restore (the thread is being torn down): undo.
            context::exit_guard(&node, previous);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        // Whatever this thread entered is a span still open that carries a context.
        if TRACKED.load(Ordering::Acquire) == 0 {
            return;
        }
        let popped = ENTERED.try_with(|stack| stack.try_borrow_mut().ok()?.pop(id));
        if let Ok(Some((node, previous))) = popped {
            let _busy = Busy::enter();
            context::exit_guard(&node, previous);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if TRACKED.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(node) = last_new::forget(&id) {
            // Its `Tracked` goes when the registry clears the span, right after this.
            let _busy = Busy::enter();
            node.end();
            return;
        }
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(tracked) = span.extensions_mut().remove::<Tracked>() else {
            return;
        };
        if tracked.carries == Carries::Own {
            let _busy = Busy::enter();
            tracked.node.end();
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let is_query = metadata.target() == SQLX_TARGET;
        let is_error = *metadata.level() == Level::ERROR;
        if !is_query && !is_error && metadata.fields().field(RETURN_FIELD).is_none() {
            return;
        }
        if self.ignored.ignores_event(metadata.target()) {
            return;
        }
        let Some(parent) = Parent::find(|| tracked_in_scope(ctx.event_span(event))) else {
            return;
        };
        let Some(_busy) = Busy::enter() else {
            return;
        };
        if is_query {
            Query::of(event).record(&self.sql, parent.node());
        } else {
            let mut found = EventFields::default();
            event.record(&mut found.visit());
            found.apply(parent.node(), is_error);
        }
    }
}

#[cfg(test)]
mod tests;
