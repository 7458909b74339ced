//! Making a record fit one datagram: every field that can grow has a step that cuts it.

use super::{Annotations, Cause, Exception, MetadataValue, Record, SDK_NAMESPACE, TRUNCATED_KEY};

/// Ways to make a document smaller, tried in order until it fits one datagram. Every
/// field that can grow is cut by one of them, and the last leaves only the fields of
/// fixed size, so every document can be made to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shrink {
    /// All metadata (user data: most likely what is large).
    Metadata,
    /// The largest request parameter recorded on an AWS call (again while it helps).
    Parameters,
    /// A database query's text, cut to [`SHRUNK_TEXT_CHARS`].
    Query,
    /// Exception stacks.
    Stacks,
    /// Exception messages and types, cut to [`SHRUNK_TEXT_CHARS`].
    Messages,
    /// All annotations.
    Annotations,
    /// Every exception but the first.
    Exceptions,
    /// Everything else that can grow: the cause, `aws`, `http` and `sql`.
    Rest,
}

impl Shrink {
    pub(crate) const ALL: [Shrink; 8] = [
        Shrink::Metadata,
        Shrink::Parameters,
        Shrink::Query,
        Shrink::Stacks,
        Shrink::Messages,
        Shrink::Annotations,
        Shrink::Exceptions,
        Shrink::Rest,
    ];

    fn label(self) -> &'static str {
        match self {
            Shrink::Metadata => "metadata",
            Shrink::Parameters => "aws_parameters",
            Shrink::Query => "sql_query",
            Shrink::Stacks => "stacks",
            Shrink::Messages => "messages",
            Shrink::Annotations => "annotations",
            Shrink::Exceptions => "exceptions",
            Shrink::Rest => "cause_aws_http_sql",
        }
    }
}

/// Exception messages and types are cut to this many characters when a document is too
/// large.
const SHRUNK_TEXT_CHARS: usize = 1024;

/// Cuts `s` to `max` characters; whether it changed.
fn cut(s: &mut String, max: usize) -> bool {
    let keep = crate::sanitize::truncate_chars(s, max).len();
    let changed = keep < s.len();
    s.truncate(keep);
    changed
}

impl Record {
    fn exceptions_mut(&mut self) -> &mut [Exception] {
        match self.cause.as_deref_mut() {
            Some(Cause::Exceptions { exceptions, .. }) => exceptions,
            _ => &mut [],
        }
    }

    /// Applies one shrinking step; returns whether it removed anything.
    pub(crate) fn shrink(&mut self, step: Shrink) -> bool {
        let changed = match step {
            Shrink::Metadata => {
                // What shrinking itself noted does not count.
                let had = self
                    .metadata
                    .has_other_than(|ns, k| ns == SDK_NAMESPACE && k == TRUNCATED_KEY);
                if had {
                    self.metadata.clear();
                }
                had
            }
            Shrink::Parameters => self.aws.as_mut().is_some_and(|aws| {
                let largest = aws
                    .parameters
                    .iter()
                    .max_by_key(|(k, v)| k.len() + v.to_string().len())
                    .map(|(k, _)| k.clone());
                largest.is_some_and(|k| aws.parameters.remove(&k).is_some())
            }),
            Shrink::Query => self
                .sql
                .as_mut()
                .is_some_and(|sql| cut(&mut sql.sanitized_query, SHRUNK_TEXT_CHARS)),
            Shrink::Annotations => {
                let had = !self.annotations.is_empty();
                self.annotations = Annotations::default();
                had
            }
            Shrink::Stacks => {
                let mut changed = false;
                for e in self
                    .exceptions_mut()
                    .iter_mut()
                    .filter(|e| !e.stack.is_empty())
                {
                    e.truncated = Some(e.truncated.unwrap_or(0) + e.stack.len() as u32);
                    e.stack.clear();
                    changed = true;
                }
                changed
            }
            Shrink::Messages => {
                let mut changed = false;
                for e in self.exceptions_mut() {
                    changed |= cut(&mut e.message, SHRUNK_TEXT_CHARS);
                    changed |= cut(&mut e.kind, SHRUNK_TEXT_CHARS);
                }
                changed
            }
            Shrink::Exceptions => match self.cause.as_deref_mut() {
                Some(Cause::Exceptions { exceptions, .. }) if exceptions.len() > 1 => {
                    exceptions.truncate(1);
                    exceptions[0].cause = None;
                    true
                }
                _ => false,
            },
            Shrink::Rest => {
                let had = self.cause.is_some()
                    || self.aws.is_some()
                    || self.http.is_some()
                    || self.sql.is_some();
                self.cause = None;
                self.aws = None;
                self.http = None;
                self.sql = None;
                had
            }
        };
        if changed {
            self.note_truncated(step);
        }
        changed
    }

    fn note_truncated(&mut self, step: Shrink) {
        let mut cut: Vec<&str> = Vec::new();
        if let Some(MetadataValue::Json(v)) = self.metadata.get(SDK_NAMESPACE, TRUNCATED_KEY) {
            cut = serde_json::from_str(v.get()).unwrap_or_default();
        }
        if cut.contains(&step.label()) {
            return;
        }
        cut.push(step.label());
        if let Ok(v) = serde_json::value::to_raw_value(&cut) {
            self.metadata.insert(SDK_NAMESPACE, TRUNCATED_KEY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_records::{exception, record};
    use super::super::Aws;
    use super::*;

    #[test]
    fn shrinking_marks_what_was_cut() {
        let mut r = record();
        r.metadata
            .insert("ns", "k", serde_json::value::to_raw_value(&"big").unwrap());
        r.add_exceptions(vec![exception("E".into(), "m".repeat(5000))]);
        assert!(r.shrink(Shrink::Metadata));
        assert!(r.shrink(Shrink::Stacks));
        assert!(r.shrink(Shrink::Messages));
        assert!(!r.shrink(Shrink::Exceptions));
        let v = serde_json::to_value(&r.metadata).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"xray_lambda": {"truncated": ["metadata", "stacks", "messages"]}})
        );
        let Some(Cause::Exceptions { exceptions, .. }) = r.cause.as_deref() else {
            panic!("exceptions kept")
        };
        assert_eq!(exceptions[0].truncated, Some(1));
        assert!(exceptions[0].stack.is_empty());
        assert_eq!(exceptions[0].message.len(), SHRUNK_TEXT_CHARS);
    }

    /// Encoding applies each step for as long as it changes something: every step must
    /// run out, including after the notes shrinking itself leaves.
    #[test]
    fn every_shrink_step_runs_out() {
        let mut r = record();
        r.metadata
            .insert("ns", "k", serde_json::value::to_raw_value(&"v").unwrap());
        r.annotations.insert("a", 1i64.into());
        let mut parameters = serde_json::Map::new();
        for i in 0..5 {
            parameters.insert(format!("p{i}"), i.into());
        }
        r.aws = Some(Box::new(Aws {
            parameters,
            ..Aws::default()
        }));
        r.sql = Some(Box::new(super::super::Sql {
            sanitized_query: "q".repeat(3000),
            database_type: None,
        }));
        r.add_exceptions(
            (0..3)
                .map(|_| exception("k".repeat(3000), "m".repeat(3000)))
                .collect(),
        );
        for step in Shrink::ALL {
            let mut applied = 0;
            while r.shrink(step) {
                applied += 1;
                assert!(applied <= 5, "{step:?} does not run out");
            }
        }
        assert_eq!(
            serde_json::to_value(&r.metadata).unwrap(),
            serde_json::json!({"xray_lambda": {"truncated": [
                "metadata", "aws_parameters", "sql_query", "stacks", "messages",
                "annotations", "exceptions", "cause_aws_http_sql"
            ]}})
        );
    }
}
