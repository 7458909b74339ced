//! sqlx's query events as subsegments of their own.
//!
//! sqlx reports each statement once it is done, as an event with target `sqlx::query`
//! (at DEBUG, or WARN when slow): its text (`db.statement`, left empty when the
//! statement is its own `summary`), the rows, and how long it took. The subsegment is
//! made then, starting `elapsed_secs` before the event.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Event;

use crate::context::Node;
use crate::document::{AnnotationValue, Name, Sql, REMOTE_NAMESPACE, SQL_NAMESPACE};

use super::fields::Fields;

/// The target of sqlx's query events.
pub(crate) const SQLX_TARGET: &str = "sqlx::query";
/// The name of a query's subsegment unless the builder gives one.
pub(crate) const DEFAULT_NAME: &str = "SQL";

/// How query subsegments are named and described.
#[derive(Clone, Debug)]
pub(crate) struct SqlSettings {
    pub name: Name,
    pub database_type: Option<Cow<'static, str>>,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings {
            name: Cow::Borrowed(DEFAULT_NAME),
            database_type: None,
        }
    }
}

/// What one query event says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Query {
    summary: Option<String>,
    statement: Option<String>,
    rows_affected: Option<u64>,
    rows_returned: Option<u64>,
    elapsed: Option<Duration>,
}

impl Query {
    pub(crate) fn of(event: &Event<'_>) -> Self {
        let mut q = Query::default();
        event.record(&mut Fields(
            |field: &tracing::field::Field, value: super::fields::FieldValue<'_>| match field.name()
            {
                "summary" => q.summary = Some(value.text()),
                "db.statement" => q.statement = Some(value.text()),
                "rows_affected" => q.rows_affected = value.as_u64(),
                "rows_returned" => q.rows_returned = value.as_u64(),
                "elapsed_secs" => {
                    q.elapsed = value
                        .as_f64()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                }
                _ => {}
            },
        ));
        q
    }

    /// The statement as sqlx has it, placeholders and all (sqlx never puts bound values
    /// in it): the full text, or the summary when that is the whole statement.
    fn text(&self) -> Option<String> {
        self.statement
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .or_else(|| self.summary.clone())
    }

    /// Records the query as a subsegment under `parent`, ending now.
    pub(crate) fn record(self, settings: &SqlSettings, parent: &Arc<Node>) {
        let now = Instant::now();
        let started = self.elapsed.and_then(|e| now.checked_sub(e)).unwrap_or(now);
        let Some(node) = Node::child_since(parent.clone(), settings.name.clone(), false, started)
        else {
            return;
        };
        let sql = self.text().map(|sanitized_query| Sql {
            sanitized_query,
            database_type: settings.database_type.as_deref().map(str::to_owned),
        });
        node.with_record(|r| {
            r.namespace = Some(REMOTE_NAMESPACE);
            r.sql = sql.map(Box::new);
        });
        for (key, rows) in [
            ("rows_affected", self.rows_affected),
            ("rows_returned", self.rows_returned),
        ] {
            if let Some(n) = rows {
                node.put_raw_metadata(
                    Cow::Borrowed(SQL_NAMESPACE),
                    Cow::Borrowed(key),
                    AnnotationValue::UInt(n),
                );
            }
        }
        node.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(summary: &str, statement: &str) -> Query {
        Query {
            summary: Some(summary.into()),
            statement: Some(statement.into()),
            ..Query::default()
        }
    }

    #[test]
    fn the_text_is_the_statement_or_the_summary_when_sqlx_leaves_it_empty() {
        assert_eq!(
            query("SELECT 1", "").text().as_deref(),
            Some("SELECT 1"),
            "short statements are their own summary"
        );
        assert_eq!(
            query(
                "SELECT name FROM users …",
                "\n\nSELECT name FROM users WHERE id = ?\n"
            )
            .text()
            .as_deref(),
            Some("SELECT name FROM users WHERE id = ?")
        );
        assert_eq!(Query::default().text(), None);
    }
}
