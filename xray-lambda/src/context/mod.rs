//! The trace context: one [`Trace`] per invocation (or segment begun here), the
//! [`Node`]s in it, the context code running now works under ([`current`]), and the
//! futures that carry a context of their own ([`Scope`]).

mod current;
mod emit;
mod node;
mod nodes;
mod scope;
mod trace;

#[cfg(feature = "tracing-layer")]
pub(crate) use current::enter_span;
pub(crate) use current::{
    current, current_recording, enter_guard, exit_guard, recording, Context, Entered, Previous,
    Recording,
};
pub(crate) use node::Node;
pub(crate) use scope::{open_subsegment, JustEnd, OnComplete, Opened, Scope};
#[cfg(feature = "tracing-layer")]
pub(crate) use trace::follow_current;
pub(crate) use trace::Trace;

#[cfg(test)]
pub(crate) mod test_support {
    //! A sampled trace whose documents go to a real UDP socket the test reads.
    use super::*;
    use crate::emitter::Emitter;
    use crate::id::{SegmentId, TraceId};
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::time::Duration;

    pub(crate) struct Daemon {
        socket: UdpSocket,
        pub emitter: Arc<Emitter>,
    }

    impl Daemon {
        pub(crate) fn new() -> Self {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let emitter = Arc::new(Emitter::connect(socket.local_addr().unwrap()).unwrap());
            Daemon { socket, emitter }
        }

        /// A facade for a sampled (or not) invocation, like Lambda's function segment.
        pub(crate) fn facade(&self, sampled: bool) -> Arc<Node> {
            let trace = Trace::new(
                TraceId::new(),
                "Lineage=a87bd80c:0",
                sampled,
                Some(self.emitter.clone()),
                crate::config::DEFAULT_STREAMING_THRESHOLD,
            );
            Node::facade(trace, SegmentId::random())
        }

        pub(crate) fn address(&self) -> String {
            self.socket.local_addr().unwrap().to_string()
        }

        /// Every datagram's document received until the socket stays quiet, each
        /// checked against the wire format and the schema.
        pub(crate) fn datagrams(&self) -> Vec<serde_json::Value> {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 70_000];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(parse_datagram(&buf[..n]));
            }
            out
        }

        /// Every segment and subsegment received until the socket stays quiet, nested
        /// ones as documents of their own, children before parents.
        pub(crate) fn documents(&self) -> Vec<serde_json::Value> {
            self.datagrams()
                .iter()
                .flat_map(xray_local::document::flatten)
                .collect()
        }
    }

    fn validator() -> &'static xray_local::validate::Validator {
        static VALIDATOR: std::sync::OnceLock<xray_local::validate::Validator> =
            std::sync::OnceLock::new();
        VALIDATOR.get_or_init(|| xray_local::validate::Validator::new().unwrap())
    }

    /// The document in a datagram, after checking the header line and the schema.
    pub(crate) fn parse_datagram(datagram: &[u8]) -> serde_json::Value {
        assert!(datagram.len() <= crate::emitter::MAX_DATAGRAM);
        let (doc, problems) = validator().check(datagram);
        assert!(problems.is_empty(), "invalid datagram: {problems:?}");
        doc.unwrap()
    }

    /// Panics unless `doc` is valid against AWS's segment-document schema.
    pub(crate) fn assert_valid(doc: &serde_json::Value) {
        let problems = validator().check_document(doc);
        assert!(problems.is_empty(), "invalid document {doc}: {problems:?}");
    }

    /// Runs `f` with `node` current, as a traced future's poll would.
    pub(crate) fn within<R>(node: &Arc<Node>, f: impl FnOnce() -> R) -> R {
        let mut slot = Some(Context::Node(node.clone()));
        let _entered = Entered::new(&mut slot);
        f()
    }

    pub(crate) fn by_name<'a>(docs: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
        docs.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no document named {name} in {docs:#?}"))
    }
}
