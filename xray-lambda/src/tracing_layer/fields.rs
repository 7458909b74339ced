//! `tracing` field values as X-Ray sees them: annotations, metadata, errors.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use tracing::field::{Field, Visit};

use crate::context::Node;
use crate::document::{AnnotationValue, ErrorKind, Exception, MetadataValue, TRACING_NAMESPACE};
use crate::exception;

/// Field names starting with this become annotations, under the rest of the name.
pub(crate) const ANNOTATION_PREFIX: &str = "annotation.";
/// The field `#[instrument(err)]` and most error logging put the error in.
const ERROR_FIELD: &str = "error";
/// Fields that may name the error's type (OpenTelemetry's convention, and ours).
const ERROR_TYPE_FIELDS: [&str; 2] = ["error.type", "exception.type"];
/// The field `#[instrument(ret)]` puts the return value in.
pub(crate) const RETURN_FIELD: &str = "return";

/// One field's value, keeping its type.
#[derive(Clone, Copy)]
pub(crate) enum FieldValue<'a> {
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
    Str(&'a str),
    Debug(&'a dyn fmt::Debug),
    Error(&'a (dyn Error + 'static)),
}

impl FieldValue<'_> {
    pub(crate) fn text(&self) -> String {
        match *self {
            FieldValue::Str(s) => s.to_owned(),
            FieldValue::Debug(d) => format!("{d:?}"),
            FieldValue::Error(e) => e.to_string(),
            FieldValue::I64(v) => v.to_string(),
            FieldValue::U64(v) => v.to_string(),
            FieldValue::I128(v) => v.to_string(),
            FieldValue::U128(v) => v.to_string(),
            FieldValue::F64(v) => v.to_string(),
            FieldValue::Bool(v) => v.to_string(),
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match *self {
            FieldValue::U64(v) => Some(v),
            FieldValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::F64(v) => Some(v),
            FieldValue::I64(v) => Some(v as f64),
            FieldValue::U64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value with its JSON type where it has one. A `Debug`ged value (`?x`, and
    /// what `#[instrument]` records of most arguments and return values) keeps the type
    /// its text shows: `6` is a number, `true` a boolean, `"u-1"` the string `u-1`;
    /// anything else is its text.
    fn typed(&self) -> AnnotationValue {
        match *self {
            FieldValue::I64(v) => v.into(),
            FieldValue::U64(v) => v.into(),
            FieldValue::I128(v) => {
                i64::try_from(v).map_or_else(|_| v.to_string().into(), Into::into)
            }
            FieldValue::U128(v) => {
                u64::try_from(v).map_or_else(|_| v.to_string().into(), Into::into)
            }
            FieldValue::F64(v) => v.into(),
            FieldValue::Bool(v) => v.into(),
            FieldValue::Debug(_) => typed_text(self.text()),
            FieldValue::Str(_) | FieldValue::Error(_) => self.text().into(),
        }
    }

    /// The value as metadata (see [`Self::typed`]).
    fn metadata(&self) -> MetadataValue {
        self.typed().into()
    }
}

/// What the `Debug` text of a value says it is.
fn typed_text(text: String) -> AnnotationValue {
    if let Ok(v) = text.parse::<i64>() {
        return v.into();
    }
    if let Ok(v) = text.parse::<u64>() {
        return v.into();
    }
    match text.as_str() {
        "true" => return true.into(),
        "false" => return false.into(),
        _ => {}
    }
    let numeric = |c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E');
    if text.chars().all(numeric) {
        if let Ok(v) = text.parse::<f64>() {
            return v.into();
        }
    }
    if text.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(&text) {
            return s.into();
        }
    }
    text.into()
}

/// A [`Visit`] that hands each field, with its typed value, to a closure.
pub(crate) struct Fields<F>(pub F);

impl<F: FnMut(&Field, FieldValue<'_>)> Visit for Fields<F> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        (self.0)(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        (self.0)(field, FieldValue::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        (self.0)(field, FieldValue::I128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        (self.0)(field, FieldValue::U128(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        (self.0)(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        (self.0)(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        (self.0)(field, FieldValue::Str(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        (self.0)(field, FieldValue::Error(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        (self.0)(field, FieldValue::Debug(value));
    }
}

/// Which span fields become annotations: those named `annotation.<key>`, and those the
/// builder listed.
#[derive(Clone, Debug, Default)]
pub(crate) struct AnnotationFields(Vec<Cow<'static, str>>);

impl AnnotationFields {
    pub(crate) fn add(&mut self, name: Cow<'static, str>) {
        if !self.0.contains(&name) {
            self.0.push(name);
        }
    }

    /// The annotation key for field `name`, if it is to be one.
    pub(crate) fn key(&self, name: &'static str) -> Option<&'static str> {
        name.strip_prefix(ANNOTATION_PREFIX)
            .or_else(|| self.0.iter().any(|a| a == name).then_some(name))
    }

    /// Records a span's field on its node: an annotation (same rules as
    /// `put_annotation`) or metadata under [`TRACING_NAMESPACE`].
    pub(crate) fn record(&self, node: &Node, field: &Field, value: FieldValue<'_>) {
        let name = field.name();
        match self.key(name) {
            Some(key) => node.put_annotation(Cow::Borrowed(key), value.typed()),
            None => node.put_raw_metadata(
                Cow::Borrowed(TRACING_NAMESPACE),
                Cow::Borrowed(name),
                value.metadata(),
            ),
        }
    }
}

/// What an event says that X-Ray keeps: an error, and a function's return value.
#[derive(Default)]
pub(crate) struct EventFields {
    error: Option<Vec<Exception>>,
    error_text: Option<String>,
    error_type: Option<String>,
    returned: Option<MetadataValue>,
}

impl EventFields {
    pub(crate) fn visit(&mut self) -> Fields<impl FnMut(&Field, FieldValue<'_>) + '_> {
        Fields(
            move |field: &Field, value: FieldValue<'_>| match field.name() {
                ERROR_FIELD => match value {
                    FieldValue::Error(e) => self.error = Some(exception::from_dyn_error(e, None)),
                    v => self.error_text = Some(v.text()),
                },
                name if ERROR_TYPE_FIELDS.contains(&name) => self.error_type = Some(value.text()),
                RETURN_FIELD => self.returned = Some(value.metadata()),
                _ => {}
            },
        )
    }

    /// Records what was found on `node`: the error as a fault (when `error_level`: only
    /// ERROR events count), the return value as metadata.
    pub(crate) fn apply(self, node: &Node, error_level: bool) {
        if let Some(returned) = self.returned {
            node.put_raw_metadata(
                Cow::Borrowed(TRACING_NAMESPACE),
                Cow::Borrowed(RETURN_FIELD),
                returned,
            );
        }
        if !error_level {
            return;
        }
        let exceptions = match (self.error, self.error_text) {
            // The chain knows its types better than a field naming one.
            (Some(chain), _) => chain,
            (None, Some(text)) => exception::from_formatted(text, self.error_type.as_deref()),
            (None, None) => return,
        };
        node.add_exceptions(exceptions, ErrorKind::Fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_of(value: FieldValue<'_>) -> serde_json::Value {
        serde_json::to_value(value.metadata()).unwrap()
    }

    #[test]
    fn values_keep_their_json_type() {
        let cases: [(FieldValue<'_>, serde_json::Value); 12] = [
            (FieldValue::I64(-3), json!(-3)),
            (FieldValue::U64(u64::MAX), json!(u64::MAX)),
            (FieldValue::I128(-5), json!(-5)),
            (FieldValue::U128(u128::MAX), json!(u128::MAX.to_string())),
            (FieldValue::F64(0.5), json!(0.5)),
            (FieldValue::F64(f64::NAN), json!("NaN")),
            (FieldValue::Bool(true), json!(true)),
            (FieldValue::Str("42"), json!("42")),
            (FieldValue::Debug(&6u32), json!(6)),
            (FieldValue::Debug(&"u-1"), json!("u-1")),
            (FieldValue::Debug(&Some(2.5)), json!("Some(2.5)")),
            (FieldValue::Debug(&false), json!(false)),
        ];
        for (value, expected) in cases {
            assert_eq!(json_of(value), expected);
        }
        assert_eq!(json_of(FieldValue::Debug(&1.5e300)), json!(1.5e300));
        assert_eq!(
            json_of(FieldValue::Debug(&"say \"hi\"\tthen")),
            json!("say \"hi\"\tthen")
        );
    }

    #[test]
    fn annotation_fields_are_prefixed_or_listed() {
        let mut fields = AnnotationFields::default();
        fields.add("user_id".into());
        assert_eq!(fields.key("annotation.tenant"), Some("tenant"));
        assert_eq!(fields.key("user_id"), Some("user_id"));
        assert_eq!(fields.key("other"), None);
        assert_eq!(fields.key("annotation."), Some(""));
    }
}
