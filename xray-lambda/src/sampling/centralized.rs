//! Centralized sampling: the rules set in the X-Ray console, through the daemon, which
//! signs and forwards X-Ray's sampling API on its TCP address.
//!
//! A background thread asks for the rules (`POST /GetSamplingRules`) at start and
//! every 5 minutes, and reports each rule's statistics for its quota
//! (`POST /SamplingTargets`) as soon as the rules arrive, then every 10 seconds or as
//! the service's `Interval` says. Until a rule has a quota, it may borrow one request a
//! second. Without rules (the daemon does not answer, or has not for an hour), the
//! local rules decide.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::reservoir::{draw, epoch_seconds, since_epoch, PerSecond};
use super::SamplingRequest;
use crate::glob::matches_ignoring_case;
use crate::plain_http::{self, Endpoint};

/// How often the rules are asked for.
const RULES_INTERVAL: Duration = Duration::from_secs(300);
/// How often statistics are reported, unless the service says otherwise.
const TARGETS_INTERVAL: Duration = Duration::from_secs(10);
/// How long rules are used without a successful refresh.
const RULES_TTL: Duration = Duration::from_secs(3600);
/// How soon to try again when the daemon did not answer.
const RETRY: Duration = Duration::from_secs(10);
/// How long one call to the daemon may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Statistics documents per `SamplingTargets` call, as the API allows.
const MAX_STATISTICS: usize = 25;
/// The longest the poller sleeps at once, so it notices soon that it is not needed.
const TICK: Duration = Duration::from_millis(500);

/// The centralized rules, their state, and where they come from.
#[derive(Debug)]
pub(crate) struct Centralized {
    daemon: Endpoint,
    /// Who this process is to X-Ray: 24 hex digits.
    client_id: String,
    rules: RwLock<Rules>,
    /// Set once the daemon's failure has been reported; cleared when it answers.
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct Rules {
    /// By priority, then name.
    rules: Vec<Arc<Rule>>,
    /// When they last arrived.
    fetched: Option<Instant>,
    /// The rules are current as of this (epoch seconds): when they were asked for, or
    /// the latest `ModifiedAt` among them if the service's clock is ahead of ours. A
    /// `LastRuleModification` after it means they changed since; compared with the
    /// `ModifiedAt`s alone, a deleted rule, which leaves none, would look like a change
    /// at every report.
    current_as_of: f64,
}

/// One rule of the service, and its state here.
#[derive(Debug)]
struct Rule {
    name: String,
    priority: i64,
    service_name: String,
    service_type: String,
    host: String,
    method: String,
    path: String,
    resource_arn: String,
    /// A rule with attributes needs what is not known when a request arrives.
    has_attributes: bool,
    state: Mutex<RuleState>,
}

#[derive(Debug, Default)]
struct RuleState {
    rate: f64,
    /// The reservoir quota X-Ray gave this process, and until when (epoch seconds).
    quota: Option<(u64, u64)>,
    reservoir: PerSecond,
    requests: u64,
    sampled: u64,
    borrowed: u64,
}

impl Rule {
    fn applies(&self, r: &SamplingRequest<'_>) -> bool {
        !self.has_attributes
            && matches_ignoring_case(&self.service_name, r.service_name)
            && matches_ignoring_case(&self.service_type, r.service_type)
            && matches_ignoring_case(&self.host, r.host)
            && matches_ignoring_case(&self.method, r.method)
            && matches_ignoring_case(&self.path, r.path)
            // A process serving requests has no resource ARN to match.
            && matches_ignoring_case(&self.resource_arn, "")
    }

    fn sample(&self) -> bool {
        let now = epoch_seconds();
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        s.requests += 1;
        let sampled = match s.quota {
            Some((quota, until)) if now < until => s.reservoir.take(now, quota) || draw(s.rate),
            // No quota yet, or it ran out: borrow one a second.
            _ => {
                if s.reservoir.take(now, 1) {
                    s.borrowed += 1;
                    true
                } else {
                    draw(s.rate)
                }
            }
        };
        if sampled {
            s.sampled += 1;
        }
        sampled
    }
}

impl Centralized {
    /// Starts polling the daemon at `daemon` (its TCP address) for rules.
    pub(crate) fn start(daemon: SocketAddr) -> Arc<Self> {
        let id = || format!("{:016x}", crate::id::next_random());
        let c = Arc::new(Centralized {
            daemon: Endpoint::at(daemon, "/"),
            client_id: id()[..12].to_owned() + &id()[..12],
            rules: RwLock::default(),
            warned: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&c);
        let spawned = std::thread::Builder::new()
            .name("xray-sampling".into())
            .spawn(move || poll(weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "X-Ray centralized sampling could not start; sampling by local rules");
        }
        c
    }

    /// The decision of the first rule that applies; `None` without usable rules.
    pub(crate) fn decide(&self, r: &SamplingRequest<'_>) -> Option<bool> {
        let rules = self.rules.read().ok()?;
        if rules.fetched.is_none_or(|at| at.elapsed() >= RULES_TTL) {
            return None;
        }
        Some(rules.rules.iter().find(|rule| rule.applies(r))?.sample())
    }

    fn call<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> io::Result<T> {
        let body = serde_json::to_vec(body)?;
        let response = plain_http::send(
            "POST",
            &self.daemon.with_path(path),
            &[("Content-Type", "application/json")],
            &body,
            CALL_TIMEOUT,
        )?
        .ok()?;
        Ok(serde_json::from_slice(&response)?)
    }

    /// Fetches every page of rules and puts them in place, keeping the state of rules
    /// that were there before.
    fn fetch_rules(&self) -> io::Result<()> {
        let asked_at = since_epoch().as_secs_f64();
        let mut records = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page: RulesPage = self.call(
                "/GetSamplingRules",
                &RulesRequest {
                    next_token: next_token.as_deref(),
                },
            )?;
            records.extend(page.records);
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(t) if records.len() < 10_000 => next_token = Some(t),
                _ => break,
            }
        }
        let mut fresh = Rules {
            rules: Vec::with_capacity(records.len()),
            fetched: Some(Instant::now()),
            current_as_of: asked_at,
        };
        let old = self
            .rules
            .read()
            .map(|r| r.rules.clone())
            .unwrap_or_default();
        for record in records {
            let r = record.rule;
            // Only version 1 rules exist today; a later kind may mean something else.
            if r.version.unwrap_or(1) != 1 || r.rule_name.is_empty() {
                continue;
            }
            fresh.current_as_of = fresh.current_as_of.max(record.modified_at.unwrap_or(0.0));
            let has_attributes = r.attributes.as_ref().is_some_and(|a| !a.is_empty());
            let state = old
                .iter()
                .find(|o| o.name == r.rule_name)
                .and_then(|o| o.state.lock().ok().map(|mut s| std::mem::take(&mut *s)))
                .map(|s| RuleState {
                    rate: r.fixed_rate,
                    ..s
                })
                .unwrap_or(RuleState {
                    rate: r.fixed_rate,
                    ..RuleState::default()
                });
            let glob = |g: String| if g.is_empty() { "*".to_owned() } else { g };
            fresh.rules.push(Arc::new(Rule {
                name: r.rule_name,
                priority: r.priority,
                service_name: glob(r.service_name),
                service_type: glob(r.service_type),
                host: glob(r.host),
                method: glob(r.http_method),
                path: glob(r.url_path),
                resource_arn: glob(r.resource_arn),
                has_attributes,
                state: Mutex::new(state),
            }));
        }
        fresh.rules.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        for r in fresh.rules.iter().filter(|r| r.has_attributes) {
            tracing::warn!(
                rule = %r.name,
                "X-Ray sampling rule {:?} matches on attributes, which are not known when a \
                 request arrives and sampling is decided: it never applies here",
                r.name
            );
        }
        if let Ok(mut rules) = self.rules.write() {
            *rules = fresh;
        }
        Ok(())
    }

    /// Reports every rule's statistics since the last report and applies the targets
    /// that come back. Says when to report next, and whether the rules changed.
    fn report(&self) -> io::Result<(Duration, bool)> {
        let (rules, current_as_of) = match self.rules.read() {
            Ok(r) => (r.rules.clone(), r.current_as_of),
            Err(_) => return Ok((TARGETS_INTERVAL, false)),
        };
        let now = epoch_seconds();
        let mut interval: Option<u64> = None;
        let mut changed = false;
        for chunk in rules.chunks(MAX_STATISTICS) {
            let statistics: Vec<Statistics<'_>> = chunk
                .iter()
                .map(|r| {
                    let mut s = r.state.lock().unwrap_or_else(|e| e.into_inner());
                    let doc = Statistics {
                        rule_name: &r.name,
                        client_id: &self.client_id,
                        request_count: s.requests,
                        sampled_count: s.sampled,
                        borrow_count: s.borrowed,
                        timestamp: now,
                    };
                    (s.requests, s.sampled, s.borrowed) = (0, 0, 0);
                    doc
                })
                .collect();
            let targets: TargetsResponse = self.call(
                "/SamplingTargets",
                &TargetsRequest {
                    documents: statistics,
                },
            )?;
            changed |= targets.last_rule_modification.unwrap_or(0.0) > current_as_of;
            for t in targets.documents {
                let Some(rule) = rules.iter().find(|r| r.name == t.rule_name) else {
                    continue;
                };
                let mut s = rule.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(rate) = t.fixed_rate {
                    s.rate = rate.clamp(0.0, 1.0);
                }
                if let Some(quota) = t.reservoir_quota {
                    let until = t.reservoir_quota_ttl.map_or(now + 10, |ttl| ttl as u64);
                    s.quota = Some((quota, until));
                }
                if let Some(i) = t.interval.filter(|&i| i > 0) {
                    interval = Some(interval.map_or(i, |least| least.min(i)));
                }
            }
        }
        Ok((
            interval.map_or(TARGETS_INTERVAL, Duration::from_secs),
            changed,
        ))
    }

    fn failed(&self, what: &str, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                daemon = %self.daemon.addr,
                error = %e,
                "X-Ray daemon did not answer {what}; sampling by local rules until it does"
            );
        } else {
            tracing::debug!(daemon = %self.daemon.addr, error = %e, "X-Ray daemon did not answer {what}");
        }
    }
}

/// The poller: runs until the sampler it serves is dropped.
fn poll(me: Weak<Centralized>) {
    let mut rules_due = Instant::now();
    let mut targets_due: Option<Instant> = None;
    loop {
        let Some(c) = me.upgrade() else {
            return;
        };
        let now = Instant::now();
        if now >= rules_due {
            match c.fetch_rules() {
                Ok(()) => {
                    c.warned.store(false, Ordering::Relaxed);
                    rules_due = now + RULES_INTERVAL + jitter(5_000);
                    // Ask for quotas at once rather than borrowing for 10 seconds.
                    targets_due.get_or_insert(now);
                }
                Err(e) => {
                    c.failed("GetSamplingRules", &e);
                    rules_due = now + RETRY;
                }
            }
        }
        if let Some(due) = targets_due.filter(|&due| now >= due) {
            match c.report() {
                Ok((interval, changed)) => {
                    targets_due = Some(due.max(now) + interval + jitter(100));
                    if changed {
                        rules_due = now;
                    }
                }
                Err(e) => {
                    c.failed("SamplingTargets", &e);
                    targets_due = Some(now + RETRY);
                }
            }
        }
        drop(c);
        let next = targets_due.map_or(rules_due, |t| t.min(rules_due));
        std::thread::sleep(next.saturating_duration_since(Instant::now()).min(TICK));
    }
}

/// Up to `ms` milliseconds, so that many processes do not call at the same instant.
fn jitter(ms: u64) -> Duration {
    Duration::from_millis(crate::id::next_random() % ms.max(1))
}

/// A time in epoch seconds, as the API sends it (a number); anything else is left out
/// rather than failing the whole answer.
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

#[derive(Serialize)]
struct RulesRequest<'a> {
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<&'a str>,
}

#[derive(Deserialize)]
struct RulesPage {
    #[serde(rename = "SamplingRuleRecords", default)]
    records: Vec<RuleRecord>,
    #[serde(rename = "NextToken", default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct RuleRecord {
    #[serde(rename = "SamplingRule")]
    rule: ApiRule,
    #[serde(rename = "ModifiedAt", default, deserialize_with = "seconds")]
    modified_at: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiRule {
    #[serde(default)]
    rule_name: String,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    fixed_rate: f64,
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    service_type: String,
    #[serde(default)]
    host: String,
    #[serde(rename = "HTTPMethod", default)]
    http_method: String,
    #[serde(rename = "URLPath", default)]
    url_path: String,
    #[serde(rename = "ResourceARN", default)]
    resource_arn: String,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Serialize)]
struct TargetsRequest<'a> {
    #[serde(rename = "SamplingStatisticsDocuments")]
    documents: Vec<Statistics<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Statistics<'a> {
    rule_name: &'a str,
    #[serde(rename = "ClientID")]
    client_id: &'a str,
    request_count: u64,
    sampled_count: u64,
    borrow_count: u64,
    timestamp: u64,
}

#[derive(Deserialize)]
struct TargetsResponse {
    #[serde(rename = "SamplingTargetDocuments", default)]
    documents: Vec<Target>,
    #[serde(rename = "LastRuleModification", default, deserialize_with = "seconds")]
    last_rule_modification: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Target {
    #[serde(default)]
    rule_name: String,
    #[serde(default)]
    fixed_rate: Option<f64>,
    #[serde(default)]
    reservoir_quota: Option<u64>,
    #[serde(rename = "ReservoirQuotaTTL", default, deserialize_with = "seconds")]
    reservoir_quota_ttl: Option<f64>,
    #[serde(default)]
    interval: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// The daemon's sampling endpoints, as a test drives them.
    struct Daemon {
        addr: SocketAddr,
        /// Every request, as `(path, body)`, passed on once it has been answered.
        calls: mpsc::Receiver<(String, Value)>,
        /// What `SamplingTargets` is answered with from now on.
        targets: Arc<Mutex<Value>>,
        /// Nothing is answered until this is dropped, so a test can look at the state
        /// before any rules can have arrived.
        hold: mpsc::Sender<()>,
    }

    fn daemon(rules: Value, targets: Value) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, calls) = mpsc::channel();
        let (hold, held) = mpsc::channel::<()>();
        let targets = Arc::new(Mutex::new(targets));
        let answers = Arc::clone(&targets);
        std::thread::spawn(move || {
            let _ = held.recv();
            for conn in listener.incoming() {
                let mut s = conn.unwrap();
                let mut raw = Vec::new();
                let mut buf = [0; 4096];
                // Read the head, then the body its Content-Length announces.
                let (path, body) = loop {
                    let n = s.read(&mut buf).unwrap();
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            let path = head.split(' ').nth(1).unwrap().to_owned();
                            break (path, serde_json::from_str::<Value>(body).unwrap());
                        }
                    }
                };
                let answer = if path == "/GetSamplingRules" {
                    rules.to_string()
                } else {
                    answers.lock().unwrap().to_string()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if tx.send((path, body)).is_err() {
                    return;
                }
            }
        });
        Daemon {
            addr,
            calls,
            targets,
            hold,
        }
    }

    fn rule(name: &str, priority: i64, method: &str, path: &str, rate: f64) -> Value {
        json!({"SamplingRule": {
            "RuleName": name, "RuleARN": format!("arn:aws:xray:eu-west-1:1:sampling-rule/{name}"),
            "ResourceARN": "*", "Priority": priority, "FixedRate": rate, "ReservoirSize": 1,
            "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": method,
            "URLPath": path, "Version": 1, "Attributes": {}
        }, "CreatedAt": 1.7e9, "ModifiedAt": 1.7e9})
    }

    fn request<'a>(method: &'a str, path: &'a str) -> SamplingRequest<'a> {
        SamplingRequest {
            host: "orders.test",
            method,
            path,
            service_name: "orders",
            service_type: "",
        }
    }

    /// Waits for the next call to `path`, giving its body.
    fn next_call(rx: &mpsc::Receiver<(String, Value)>, path: &str) -> Value {
        loop {
            let (p, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            if p == path {
                return body;
            }
        }
    }

    /// Decisions for `n` requests made within one wall-clock second.
    fn within_one_second(c: &Centralized, n: usize, r: &SamplingRequest<'_>) -> usize {
        let start = epoch_seconds();
        while epoch_seconds() == start {
            std::thread::sleep(Duration::from_millis(5));
        }
        (0..n).filter(|_| c.decide(r) == Some(true)).count()
    }

    /// Request, sampled and borrow counts per rule, added up over the reports made
    /// from now until two more have come: a report already on its way when this is
    /// called may have been counted before the latest decisions.
    fn reported(rx: &mpsc::Receiver<(String, Value)>) -> HashMap<String, [u64; 3]> {
        let mut bodies: Vec<Value> = rx
            .try_iter()
            .filter(|(p, _)| p == "/SamplingTargets")
            .map(|(_, body)| body)
            .collect();
        bodies.push(next_call(rx, "/SamplingTargets"));
        bodies.push(next_call(rx, "/SamplingTargets"));
        let mut totals = HashMap::<String, [u64; 3]>::new();
        for body in &bodies {
            for d in body["SamplingStatisticsDocuments"].as_array().unwrap() {
                let t = totals
                    .entry(d["RuleName"].as_str().unwrap().into())
                    .or_default();
                for (i, k) in ["RequestCount", "SampledCount", "BorrowCount"]
                    .iter()
                    .enumerate()
                {
                    t[i] += d[k].as_u64().unwrap();
                }
            }
        }
        totals
    }

    fn has_quota(c: &Centralized, rule: &str) -> bool {
        c.rules
            .read()
            .unwrap()
            .rules
            .iter()
            .any(|r| r.name == rule && r.state.lock().unwrap().quota.is_some())
    }

    #[test]
    fn decisions_follow_the_rules_and_quotas_and_statistics_are_reported() {
        let rules = json!({"SamplingRuleRecords": [
            rule("Default", 10000, "*", "*", 0.0),
            // Listed after the default, applied before it: by priority.
            rule("orders", 10, "POST", "/orders*", 0.0),
            {"SamplingRule": {"RuleName": "by-status", "Priority": 1, "FixedRate": 1.0,
              "ReservoirSize": 1, "ServiceName": "*", "ServiceType": "*", "Host": "*",
              "HTTPMethod": "*", "URLPath": "*", "ResourceARN": "*", "Version": 1,
              "Attributes": {"http.status": "5*"}}},
        ]});
        // No quota yet, so the rules borrow.
        let no_quota = json!({"SamplingTargetDocuments": [
            {"RuleName": "Default", "FixedRate": 0.0, "Interval": 1}
        ], "LastRuleModification": 1.0});
        let d = daemon(rules, no_quota);
        let c = Centralized::start(d.addr);
        assert_eq!(c.decide(&request("POST", "/orders")), None, "no rules yet");
        drop(d.hold);
        next_call(&d.calls, "/GetSamplingRules");
        let first = next_call(&d.calls, "/SamplingTargets");
        let docs = first["SamplingStatisticsDocuments"].as_array().unwrap();
        let names: Vec<&str> = docs
            .iter()
            .map(|d| d["RuleName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["by-status", "orders", "Default"]);
        assert_eq!(docs[0]["ClientID"].as_str().unwrap().len(), 24);

        // Borrowing: one a second, and counted as borrowed.
        let orders = request("POST", "/orders");
        assert_eq!(within_one_second(&c, 50, &orders), 1);
        assert_eq!(reported(&d.calls)["orders"], [50, 1, 1]);

        // The quota: 3 a second, none borrowed; other requests fall to the default.
        let ttl = epoch_seconds() + 600;
        *d.targets.lock().unwrap() = json!({"SamplingTargetDocuments": [
            {"RuleName": "orders", "FixedRate": 0.0, "ReservoirQuota": 3,
             "ReservoirQuotaTTL": ttl as f64, "Interval": 1}
        ], "LastRuleModification": 1.0});
        let deadline = Instant::now() + Duration::from_secs(10);
        while !has_quota(&c, "orders") {
            assert!(Instant::now() < deadline, "the quota never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(within_one_second(&c, 50, &orders), 3);
        assert_eq!(
            within_one_second(&c, 50, &request("GET", "/health")),
            1,
            "borrowed"
        );
        let totals = reported(&d.calls);
        assert_eq!(totals["orders"], [50, 3, 0]);
        assert_eq!(totals["Default"], [50, 1, 1]);
        assert_eq!(
            totals["by-status"],
            [0, 0, 0],
            "a rule on attributes never applies"
        );
    }

    /// The paths of the calls made until `n` more reports have come.
    fn calls_over_reports(rx: &mpsc::Receiver<(String, Value)>, n: usize) -> Vec<String> {
        let mut paths = Vec::new();
        while paths.iter().filter(|p| *p == "/SamplingTargets").count() < n {
            paths.push(rx.recv_timeout(Duration::from_secs(10)).unwrap().0);
        }
        paths
    }

    #[test]
    fn rules_are_fetched_again_only_when_they_changed_since_and_are_not_used_once_stale() {
        let rules = json!({"SamplingRuleRecords": [rule("Default", 10000, "*", "*", 1.0)]});
        // After every rule's ModifiedAt, before the rules were asked for: a rule deleted
        // then. The rules in hand are current.
        let targets = |last_modification: f64| {
            json!({"SamplingTargetDocuments": [
                {"RuleName": "Default", "FixedRate": 1.0, "Interval": 1}
            ], "LastRuleModification": last_modification})
        };
        let d = daemon(rules, targets(1.75e9));
        drop(d.hold);
        let (c, rx) = (Centralized::start(d.addr), d.calls);
        assert_eq!(
            calls_over_reports(&rx, 3),
            [
                "/GetSamplingRules",
                "/SamplingTargets",
                "/SamplingTargets",
                "/SamplingTargets"
            ],
            "rules current as of the change are not asked for again"
        );
        // Modified after the rules in hand: asked for again at once, not in 5 minutes.
        *d.targets.lock().unwrap() = targets(since_epoch().as_secs_f64());
        next_call(&rx, "/GetSamplingRules");
        // The first report after it comes once the new rules are in place, and is
        // answered with the same modification time as the one before.
        assert_eq!(
            calls_over_reports(&rx, 2),
            ["/SamplingTargets"; 2],
            "once fetched again, the rules are current"
        );
        assert_eq!(c.decide(&request("GET", "/")), Some(true));
        let long_ago = Instant::now().checked_sub(RULES_TTL + Duration::from_secs(1));
        if let Some(at) = long_ago {
            c.rules.write().unwrap().fetched = Some(at);
            assert_eq!(
                c.decide(&request("GET", "/")),
                None,
                "rules an hour old are not used"
            );
        }
    }

    #[test]
    fn times_the_api_might_send_otherwise_do_not_fail_the_answer() {
        let targets: TargetsResponse = serde_json::from_value(json!({
            "SamplingTargetDocuments": [
                {"RuleName": "a", "ReservoirQuota": 2, "ReservoirQuotaTTL": "1800000000"},
                {"RuleName": "b", "ReservoirQuota": 2, "ReservoirQuotaTTL": "2027-01-01T00:00:00Z"}
            ],
            "LastRuleModification": null
        }))
        .unwrap();
        let ttl: Vec<Option<f64>> = targets
            .documents
            .iter()
            .map(|t| t.reservoir_quota_ttl)
            .collect();
        assert_eq!(ttl, [Some(1.8e9), None]);
        assert_eq!(targets.last_rule_modification, None);
    }

    #[test]
    fn without_a_daemon_there_is_no_decision_here() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let c = Centralized::start(closed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.warned.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "the failure was never reported");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(c.decide(&request("GET", "/")), None);
    }
}
