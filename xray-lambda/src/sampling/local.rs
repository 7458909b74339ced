//! Local sampling rules: X-Ray's default rule, or a rules file in the official SDKs'
//! format.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::reservoir::{draw, epoch_seconds, PerSecond};
use super::SamplingRequest;
use crate::glob::matches_ignoring_case;

/// Sampling rules applied in this process: rules matched in order, then a default.
///
/// X-Ray's default is one request each second, then 5% of the rest (a reservoir of 1
/// and a rate of 0.05), per process. A rules file replaces it, in the format the
/// official SDKs read (version 2; version 1, with `service_name` where version 2 has
/// `host`, is read too):
///
/// ```json
/// {
///   "version": 2,
///   "rules": [
///     {
///       "description": "Every order placed",
///       "host": "*",
///       "http_method": "POST",
///       "url_path": "/orders",
///       "fixed_target": 1,
///       "rate": 1.0
///     }
///   ],
///   "default": { "fixed_target": 1, "rate": 0.05 }
/// }
/// ```
///
/// `host`, `http_method` and `url_path` are globs (`*` any run of characters, `?` one;
/// in any letter case, as the official SDKs match them); a missing one matches everything.
/// `fixed_target` requests a second are sampled, then `rate` (0 to 1) of the rest.
///
/// Sampling is decided when a request arrives, so a rule that needs what is known only
/// later (`"attributes": {"http.status": "5*"}`) can never apply: such a rule is kept
/// out, with a warning naming it, when the file is read.
#[derive(Debug)]
pub struct SamplingRules {
    rules: Vec<LocalRule>,
    default: LocalRule,
}

#[derive(Debug)]
struct LocalRule {
    description: String,
    host: String,
    method: String,
    path: String,
    fixed_target: u64,
    rate: f64,
    reservoir: Mutex<PerSecond>,
}

impl LocalRule {
    fn new(fixed_target: u64, rate: f64) -> Self {
        LocalRule {
            description: String::new(),
            host: "*".into(),
            method: "*".into(),
            path: "*".into(),
            fixed_target,
            rate,
            reservoir: Mutex::default(),
        }
    }

    fn applies(&self, r: &SamplingRequest<'_>) -> bool {
        matches_ignoring_case(&self.host, r.host)
            && matches_ignoring_case(&self.method, r.method)
            && matches_ignoring_case(&self.path, r.path)
    }

    fn sample(&self) -> bool {
        let now = epoch_seconds();
        let from_reservoir = self
            .reservoir
            .lock()
            .map(|mut r| r.take(now, self.fixed_target))
            .unwrap_or(false);
        from_reservoir || draw(self.rate)
    }
}

impl Default for SamplingRules {
    /// X-Ray's default rule: 1 request a second, then 5%.
    fn default() -> Self {
        SamplingRules {
            rules: Vec::new(),
            default: LocalRule::new(1, 0.05),
        }
    }
}

impl SamplingRules {
    /// Reads a rules file. A malformed file is an error naming the file, the line and
    /// the field.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, SamplingRulesError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SamplingRulesError {
            source: Some(path.to_owned()),
            position: None,
            message: format!("cannot be read: {e}"),
        })?;
        Self::parse(&text).map_err(|mut e| {
            e.source = Some(path.to_owned());
            e
        })
    }

    /// Reads rules from the JSON text of a rules file.
    pub fn from_json(text: &str) -> Result<Self, SamplingRulesError> {
        Self::parse(text)
    }

    fn parse(text: &str) -> Result<Self, SamplingRulesError> {
        let file: File = serde_json::from_str(text).map_err(SamplingRulesError::json)?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let description = r.description.unwrap_or_else(|| format!("rule {}", i + 1));
            if let Some(attributes) = r.attributes.filter(|a| !a.is_empty()) {
                let keys: Vec<&str> = attributes.keys().map(String::as_str).collect();
                tracing::warn!(
                    rule = %description,
                    attributes = ?keys,
                    "X-Ray sampling rule {description:?} matches on attributes ({}), which are \
                     not known when a request arrives and sampling is decided: it can never \
                     apply, and is left out",
                    keys.join(", ")
                );
                continue;
            }
            let glob = |g: Option<String>| g.unwrap_or_else(|| "*".into());
            rules.push(LocalRule {
                description,
                // Version 1 calls the host `service_name`.
                host: glob(r.host.or(r.service_name)),
                method: glob(r.http_method),
                path: glob(r.url_path),
                ..LocalRule::new(r.fixed_target, r.rate)
            });
        }
        Ok(SamplingRules {
            rules,
            default: LocalRule::new(file.default.fixed_target, file.default.rate),
        })
    }

    /// The descriptions of the rules that can apply, in order.
    pub fn descriptions(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.description.as_str())
    }

    /// Decides for one request: the first rule that applies, else the default.
    pub(crate) fn decide(&self, r: &SamplingRequest<'_>) -> bool {
        self.rules
            .iter()
            .find(|rule| rule.applies(r))
            .unwrap_or(&self.default)
            .sample()
    }
}

/// A sampling rules file that cannot be used: where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplingRulesError {
    source: Option<PathBuf>,
    position: Option<(usize, usize)>,
    message: String,
}

impl SamplingRulesError {
    fn json(e: serde_json::Error) -> Self {
        // serde_json ends its messages with the position, which is reported apart.
        let text = e.to_string();
        let position = (e.line() > 0).then(|| (e.line(), e.column()));
        let message = match text.rfind(" at line ") {
            Some(i) if position.is_some() => text[..i].to_owned(),
            _ => text,
        };
        SamplingRulesError {
            source: None,
            position,
            message,
        }
    }

    /// The line (from 1) where the problem is, when it is in the text.
    pub fn line(&self) -> Option<usize> {
        self.position.map(|(line, _)| line)
    }
}

impl fmt::Display for SamplingRulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X-Ray sampling rules")?;
        if let Some(path) = &self.source {
            write!(f, " file {}", path.display())?;
        }
        if let Some((line, column)) = self.position {
            write!(f, ", line {line} column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SamplingRulesError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[allow(dead_code)]
    #[serde(deserialize_with = "version")]
    version: u64,
    #[serde(default)]
    rules: Vec<FileRule>,
    default: FileDefault,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    #[serde(default, deserialize_with = "description")]
    description: Option<String>,
    #[serde(default, deserialize_with = "host")]
    host: Option<String>,
    #[serde(default, deserialize_with = "service_name")]
    service_name: Option<String>,
    #[serde(default, deserialize_with = "http_method")]
    http_method: Option<String>,
    #[serde(default, deserialize_with = "url_path")]
    url_path: Option<String>,
    #[serde(deserialize_with = "fixed_target")]
    fixed_target: u64,
    #[serde(deserialize_with = "rate")]
    rate: f64,
    #[serde(default, deserialize_with = "attributes")]
    attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDefault {
    #[serde(deserialize_with = "fixed_target")]
    fixed_target: u64,
    #[serde(deserialize_with = "rate")]
    rate: f64,
}

/// Field readers whose errors name the field (serde's say only what type was found).
macro_rules! fields {
    ($($f:ident: $t:ty, $what:literal $(, $valid:expr)?;)*) => {$(
        fn $f<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
            let invalid = || de::Error::custom(concat!(
                "invalid `", stringify!($f), "`: expected ", $what
            ));
            let v = <$t>::deserialize(d).map_err(|_| invalid())?;
            $( if !($valid)(&v) { return Err(invalid()); } )?
            Ok(v)
        }
    )*};
}

fields! {
    version: u64, "1 or 2", |v: &u64| matches!(v, 1 | 2);
    description: Option<String>, "a string";
    host: Option<String>, "a glob string";
    service_name: Option<String>, "a glob string";
    http_method: Option<String>, "a glob string";
    url_path: Option<String>, "a glob string";
    fixed_target: u64, "a whole number of requests a second, 0 or more";
    rate: f64, "a number from 0 to 1", |r: &f64| (0.0..=1.0).contains(r);
    attributes: Option<serde_json::Map<String, serde_json::Value>>, "an object";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(method: &'a str, path: &'a str) -> SamplingRequest<'a> {
        SamplingRequest {
            host: "orders.example.com",
            method,
            path,
            service_name: "orders",
            service_type: "",
        }
    }

    const SEED: &str = r#"{
  "version": 2,
  "rules": [
    {
      "description": "Orders",
      "host": "*",
      "http_method": "post",
      "url_path": "/orders",
      "fixed_target": 0,
      "rate": 1.0
    },
    {
      "description": "Errors",
      "host": "*",
      "http_method": "*",
      "url_path": "*",
      "fixed_target": 1,
      "rate": 1.0,
      "attributes": { "http.status": "5*" }
    },
    {
      "description": "Health checks",
      "host": "*",
      "http_method": "GET",
      "url_path": "/health*",
      "fixed_target": 0,
      "rate": 0.0
    }
  ],
  "default": { "fixed_target": 0, "rate": 0.0 }
}"#;

    #[test]
    fn rules_apply_in_order_and_rules_on_the_response_are_left_out() {
        let rules = SamplingRules::from_json(SEED).unwrap();
        assert_eq!(
            rules.descriptions().collect::<Vec<_>>(),
            ["Orders", "Health checks"]
        );
        assert!((0..100).all(|_| rules.decide(&request("POST", "/orders"))));
        assert!(!(0..100).any(|_| rules.decide(&request("POST", "/orders/1"))));
        assert!(!(0..100).any(|_| rules.decide(&request("GET", "/healthz"))));
    }

    #[test]
    fn the_default_rule_takes_one_a_second_then_five_percent() {
        let rules = SamplingRules::default();
        let sampled = (0..20_000)
            .filter(|_| rules.decide(&request("GET", "/")))
            .count();
        // One or two seconds' reservoir, then 5% of the rest (sd ≈ 31).
        assert!((850..1_150).contains(&sampled), "{sampled}");
    }

    #[test]
    fn version_1_service_name_is_the_host() {
        let rules = SamplingRules::from_json(
            r#"{"version": 1, "rules": [{"description": "d", "service_name": "*.example.com",
                "http_method": "*", "url_path": "*", "fixed_target": 0, "rate": 1}],
                "default": {"fixed_target": 0, "rate": 0}}"#,
        )
        .unwrap();
        assert!(rules.decide(&request("GET", "/")));
        let elsewhere = SamplingRequest {
            host: "other.test",
            ..request("GET", "/")
        };
        assert!(!rules.decide(&elsewhere));
    }

    #[test]
    fn malformed_files_name_the_line_and_the_field() {
        let cases = [
            (
                "{\"version\": 2,\n \"default\": {\"fixed_target\": 1, \"rate\": 1.5}}",
                2,
                "invalid `rate`: expected a number from 0 to 1",
            ),
            (
                "{\"version\": 2,\n \"rules\": [{\"fixed_targt\": 1}],\n \"default\": {}}",
                2,
                "unknown field `fixed_targt`",
            ),
            (
                "{\"version\": 2,\n \"rules\": [],\n \"default\": {\"rate\": 0.1}\n}",
                3,
                "missing field `fixed_target`",
            ),
            (
                "{\"version\": 3, \"default\": {}}",
                1,
                "invalid `version`: expected 1 or 2",
            ),
            (
                "{\"version\": 2,\n \"rules\": [{\"host\": 7}],\n \"default\": {}}",
                2,
                "invalid `host`",
            ),
            (
                "{\"version\": 2,\n \"default\": {\"fixed_target\": -1, \"rate\": 0}}",
                2,
                "invalid `fixed_target`",
            ),
            ("{\"version\": 2,", 1, "EOF"),
        ];
        for (text, line, says) in cases {
            let e = SamplingRules::from_json(text).unwrap_err();
            assert_eq!(e.line(), Some(line), "{e}");
            assert!(e.to_string().contains(says), "{e} should say {says}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let e = SamplingRules::from_path("/no/such/rules.json").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("X-Ray sampling rules file /no/such/rules.json: cannot be read"),
            "{e}"
        );
    }
}
