//! Which spans the layer leaves out: those of crates already traced another way, and
//! runtime plumbing.

use std::borrow::Cow;

/// Ignored unless the builder says otherwise. The AWS SDK's calls are subsegments
/// through `XRayInterceptor`; the rest is plumbing whose spans would bury the work.
pub(crate) const DEFAULT_IGNORED: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_*",
    "hyper",
    "hyper_util",
    "h2",
    "tower",
    "reqwest",
    "rustls",
    "tokio",
];

/// This crate's own events (it logs through `tracing`, also with `error` fields) are
/// never about the user's work. (It has no spans.)
const OWN_TARGET: &str = "xray_lambda";

/// Target patterns, each a crate or module path (`hyper`, `my_app::db`, matched with the
/// paths under it) or a prefix ending in `*` (`aws_*`).
#[derive(Clone, Debug)]
pub(crate) struct Targets {
    patterns: Vec<Cow<'static, str>>,
    /// The first bytes the patterns start with (bit `b % 128`; any bit for a pattern
    /// that is just `*`): most targets are told apart by it alone, since this runs for
    /// every span of a sampled trace.
    first_bytes: u128,
}

impl Default for Targets {
    fn default() -> Self {
        let mut t = Targets {
            patterns: Vec::new(),
            first_bytes: 0,
        };
        for &p in DEFAULT_IGNORED {
            t.add(Cow::Borrowed(p));
        }
        t
    }
}

impl Targets {
    pub(crate) fn add(&mut self, pattern: Cow<'static, str>) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
            self.index();
        }
    }

    pub(crate) fn remove(&mut self, pattern: &str) {
        self.patterns.retain(|p| p != pattern);
        self.index();
    }

    pub(crate) fn clear(&mut self) {
        self.patterns.clear();
        self.index();
    }

    fn index(&mut self) {
        self.first_bytes = self.patterns.iter().fold(0, |bits, p| match p.as_bytes() {
            [] => bits,
            [b'*', ..] => u128::MAX,
            [b, ..] => bits | 1 << (b % 128),
        });
    }

    /// Whether spans of `target` are left out.
    pub(crate) fn ignores(&self, target: &str) -> bool {
        let Some(&first) = target.as_bytes().first() else {
            return false;
        };
        self.first_bytes & (1 << (first % 128)) != 0
            && self.patterns.iter().any(|p| matches(p, target))
    }

    /// Whether events of `target` are left out.
    pub(crate) fn ignores_event(&self, target: &str) -> bool {
        matches(OWN_TARGET, target) || self.ignores(target)
    }
}

fn matches(pattern: &str, target: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => target.starts_with(prefix),
        None => target
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_out_plumbing_and_aws_crates_only() {
        let t = Targets::default();
        for ignored in [
            "lambda_runtime",
            "lambda_runtime::layers::trace",
            "lambda_runtime_api_client",
            "lambda_http::request",
            "aws_sdk_dynamodb::operation::put_item",
            "aws_smithy_runtime::client::orchestrator",
            "aws_config",
            "hyper::proto::h1",
            "hyper_util::client::legacy::pool",
            "h2::codec",
            "tower::buffer",
            "reqwest::connect",
            "rustls::client",
            "tokio::task",
        ] {
            assert!(t.ignores(ignored), "{ignored} should be ignored");
        }
        for recorded in [
            "my_app",
            "my_app::db",
            "hyperion",
            "h2o",
            "towers",
            "tokio_postgres",
            "sqlx::query",
            "process_user",
            "awsome",
        ] {
            assert!(!t.ignores(recorded), "{recorded} should be recorded");
        }
    }

    #[test]
    fn patterns_can_be_added_removed_and_cleared() {
        let mut t = Targets::default();
        t.add("my_app::noisy".into());
        assert!(t.ignores("my_app::noisy::inner"));
        assert!(!t.ignores("my_app::noisier"));
        t.remove("tower");
        assert!(!t.ignores("tower::buffer"));
        t.add("my_*".into());
        assert!(t.ignores("my_other_app"));
        t.add("*".into());
        assert!(t.ignores("anything"), "a lone * leaves out everything");
        t.clear();
        assert!(!t.ignores("hyper"));
        assert!(!t.ignores("xray_lambda::tests"));
        assert!(
            t.ignores_event("xray_lambda::emitter"),
            "never its own events"
        );
    }
}
