//! The request parameters X-Ray records of an AWS call (`table_name`, `bucket_name`,
//! `queue_url`, …): from a JSON body, a form body, the query string or the path,
//! snake_cased.

use std::collections::BTreeSet;

use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use serde_json::Value;

use super::json_object;

/// DynamoDB request parameters recorded when present (PROTOCOL §4): JSON key, and the
/// field it is recorded under (its snake_case form, spelled out so that no call has to
/// compute it).
const DYNAMODB_PARAMETERS: &[(&str, &str)] = &[
    ("TableName", "table_name"),
    ("IndexName", "index_name"),
    ("Limit", "limit"),
    ("Select", "select"),
    ("ConsistentRead", "consistent_read"),
    ("ProjectionExpression", "projection_expression"),
    ("ScanIndexForward", "scan_index_forward"),
    ("Segment", "segment"),
    ("TotalSegments", "total_segments"),
    ("ExclusiveStartTableName", "exclusive_start_table_name"),
];

/// A parameter recorded on request ([`super::XRayInterceptor::with_parameter`]).
#[derive(Clone, Debug)]
pub(super) struct ExtraParameter {
    service: String,
    operation: String,
    name: String,
    field: String,
}

impl ExtraParameter {
    pub(super) fn new(service: &str, operation: &str, name: &str) -> Self {
        ExtraParameter {
            service: service.to_owned(),
            operation: operation.to_owned(),
            name: name.to_owned(),
            field: snake_case(name),
        }
    }
}

/// The request parameters X-Ray records for this call, snake_cased.
pub(super) fn request_parameters(
    service: &str,
    operation: &str,
    request: &HttpRequest,
    extra: &[ExtraParameter],
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let standard: &[(&str, &str)] = match service {
        "DynamoDB" => DYNAMODB_PARAMETERS,
        "S3" => {
            s3_parameters(request, &mut out);
            &[]
        }
        "SQS" => &[("QueueUrl", "queue_url")],
        "SNS" => &[("TopicArn", "topic_arn")],
        // In the path for all but CreateFunction, which has it in the body.
        "Lambda" => match lambda_function(request) {
            Some(name) => {
                out.insert("function_name".into(), name.into());
                &[]
            }
            None => &[("FunctionName", "function_name")],
        },
        _ => &[],
    };
    let wanted = || {
        let extra = extra
            .iter()
            .filter(|p| p.service == service && (p.operation == operation || p.operation == "*"))
            .map(|p| (p.name.as_str(), p.field.as_str()));
        standard.iter().copied().chain(extra)
    };
    let table_names = service == "DynamoDB";
    if wanted().next().is_none() {
        return out;
    }
    // S3's body is the user's object, possibly megabytes, and never holds parameters.
    // Lambda's `Invoke` payload is read only for parameters asked for with
    // `with_parameter`: the function's name is in the path.
    let view = RequestView::new(request, service != "S3", |key| {
        (table_names && key == b"RequestItems") || wanted().any(|(name, _)| name.as_bytes() == key)
    });
    for (name, field) in wanted() {
        if let Some(v) = view.get(name) {
            out.insert(field.to_owned(), v);
        }
    }
    if let Some(items) = view.json_raw("RequestItems") {
        // Its keys: a batch's items are skipped as the body's are.
        let mut tables = BTreeSet::new();
        let found = json_object::fields(items, |table, _| {
            if let Ok(table) = std::str::from_utf8(table) {
                tables.insert(table);
            }
        });
        if found.is_some() {
            out.insert(
                "table_names".into(),
                tables.into_iter().map(Value::from).collect(),
            );
        }
    }
    out
}

/// The function a Lambda API request's path names (`/2015-03-31/functions/{name}/…`).
fn lambda_function(request: &HttpRequest) -> Option<String> {
    let path = request.uri().split('?').next().unwrap_or_default();
    let rest = path.split("/functions/").nth(1)?;
    Some(percent_decode(rest.split('/').next().unwrap_or_default()))
}

/// Where a virtual-hosted S3 host name's bucket ends: `.s3.` (`bucket.s3.region…`,
/// dual-stack), `.s3-` (FIPS, access points, Object Lambda, legacy regional hosts) and
/// `.s3express-` (directory buckets). The last one found: a bucket name may hold one.
const S3_HOST_MARKERS: [&str; 3] = [".s3.", ".s3-", ".s3express-"];

/// Bucket, key and prefix from an S3 request: path-style (`/bucket/key`) or
/// virtual-hosted (`bucket.s3.region.amazonaws.com/key`).
fn s3_parameters(request: &HttpRequest, out: &mut serde_json::Map<String, Value>) {
    let uri = request.uri();
    let after_scheme = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, path_and_query) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let host = host.split(':').next().unwrap_or(host);
    let virtual_bucket = S3_HOST_MARKERS
        .iter()
        .filter_map(|marker| host.rfind(marker))
        .max()
        .map(|i| &host[..i])
        .filter(|b| !b.is_empty());
    let (bucket, key) = match virtual_bucket {
        Some(b) => (Some(b.to_owned()), path),
        None => {
            let (b, k) = path.split_once('/').unwrap_or((path, ""));
            (Some(percent_decode(b)).filter(|b| !b.is_empty()), k)
        }
    };
    if let Some(b) = bucket {
        out.insert("bucket_name".into(), b.into());
    }
    if !key.is_empty() {
        out.insert("key".into(), percent_decode(key).into());
    }
    for (k, v) in form_pairs(query, &|k| k == b"prefix" || k == b"versionId") {
        match k.as_str() {
            "prefix" => {
                out.insert("prefix".into(), v.into());
            }
            "versionId" => {
                out.insert("version_id".into(), v.into());
            }
            _ => {}
        }
    }
}

/// The parameters a call wants from its request: top-level values of a JSON body (kept
/// unparsed), form fields of a query-protocol body, and query-string parameters. The
/// rest (a DynamoDB item, an SQS message) is skipped without being copied or decoded.
struct RequestView<'a> {
    json: Vec<(&'a [u8], &'a [u8])>,
    form: Vec<(String, String)>,
}

impl<'a> RequestView<'a> {
    /// `with_body: false` for protocols whose body is a payload rather than parameters.
    /// `wanted` is given each name as sent (a JSON key is compared unescaped).
    fn new(request: &'a HttpRequest, with_body: bool, wanted: impl Fn(&[u8]) -> bool) -> Self {
        let body = match request.body().bytes() {
            Some(b) if with_body => b,
            _ => &[],
        };
        let mut json = Vec::new();
        let is_json = body.first() == Some(&b'{')
            && json_object::fields(body, |key, value| {
                if wanted(key) {
                    json.push((key, value));
                }
            })
            .is_some();
        let mut form = Vec::new();
        if !is_json {
            json.clear();
            if let Ok(text) = std::str::from_utf8(body) {
                form.extend(form_pairs(text, &wanted));
            }
        }
        if let Some((_, query)) = request.uri().split_once('?') {
            form.extend(form_pairs(query, &wanted));
        }
        RequestView { json, form }
    }

    /// The text of top-level JSON field `name`.
    fn json_raw(&self, name: &str) -> Option<&'a [u8]> {
        self.json
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
    }

    fn get(&self, name: &str) -> Option<Value> {
        if let Some(raw) = self.json_raw(name) {
            return serde_json::from_slice(raw).ok();
        }
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Value::from(v.as_str()))
    }
}

/// The `wanted` pairs of a form or query string, decoded.
fn form_pairs<'t>(
    text: &'t str,
    wanted: &'t dyn Fn(&[u8]) -> bool,
) -> impl Iterator<Item = (String, String)> + 't {
    text.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k);
            wanted(k.as_bytes()).then(|| (k, percent_decode(v)))
        })
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `TableName` → `table_name`, `QueueUrl` → `queue_url`, `SSEKMSKeyId` → `ssekms_key_id`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::XRayInterceptor;

    #[test]
    fn snake_cases_aws_names() {
        for (from, to) in [
            ("TableName", "table_name"),
            ("QueueUrl", "queue_url"),
            ("TopicArn", "topic_arn"),
            ("SSEKMSKeyId", "ssekms_key_id"),
            ("IndexName", "index_name"),
            ("Limit", "limit"),
        ] {
            assert_eq!(snake_case(from), to);
        }
    }

    fn extra(service: &str, name: &str) -> Vec<ExtraParameter> {
        XRayInterceptor::new()
            .with_parameter(service, "*", name)
            .extra
            .to_vec()
    }

    #[test]
    fn an_s3_body_is_payload_not_parameters() {
        let req = request(
            "https://b.s3.us-east-1.amazonaws.com/k.json?versionId=v1",
            r#"{"Bucket":"not-this","key":"nor-this"}"#,
        );
        let p = request_parameters("S3", "PutObject", &req, &extra("S3", "Bucket"));
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "b", "key": "k.json", "version_id": "v1"})
        );
        // A parameter asked for still comes from the query string.
        let p = request_parameters("S3", "GetObject", &req, &extra("S3", "versionId"));
        assert_eq!(p["version_id"], "v1");
    }

    #[test]
    fn lambda_function_name_comes_from_the_path_before_the_payload() {
        let invoke = request(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my%2Dfn/invocations",
            r#"{"FunctionName":"from-the-payload"}"#,
        );
        let p = request_parameters("Lambda", "Invoke", &invoke, &[]);
        assert_eq!(p["function_name"], "my-fn");
        let create = request(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions",
            r#"{"FunctionName":"new-fn","Runtime":"provided.al2023"}"#,
        );
        let p = request_parameters("Lambda", "CreateFunction", &create, &[]);
        assert_eq!(p["function_name"], "new-fn");
    }

    #[test]
    fn spelled_out_dynamodb_fields_are_the_snake_case_of_their_keys() {
        for (name, field) in DYNAMODB_PARAMETERS {
            assert_eq!(snake_case(name), *field);
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("users%2Fu-1%2Finfo.txt"),
            "users/u-1/info.txt"
        );
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    fn request(uri: &str, body: &str) -> HttpRequest {
        let mut r = HttpRequest::new(aws_smithy_types::body::SdkBody::from(body.to_owned()));
        r.set_uri(uri.to_owned()).unwrap();
        r
    }

    #[test]
    fn dynamodb_parameters_from_the_json_body() {
        let r = request(
            "https://dynamodb.us-east-1.amazonaws.com/",
            r#"{"TableName":"users","IndexName":"by_email","Limit":10,"ConsistentRead":true,"Item":{"userId":{"S":"u-1"}}}"#,
        );
        let p = request_parameters("DynamoDB", "Query", &r, &[]);
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"table_name": "users", "index_name": "by_email", "limit": 10, "consistent_read": true})
        );
        let batch = request("https://x/", r#"{"RequestItems":{"users":[],"orders":[]}}"#);
        let p = request_parameters("DynamoDB", "BatchWriteItem", &batch, &[]);
        assert_eq!(p["table_names"], serde_json::json!(["orders", "users"]));
    }

    #[test]
    fn s3_path_and_virtual_hosted_styles() {
        let p = request_parameters(
            "S3",
            "PutObject",
            &request(
                "http://127.0.0.1:5000/user-files/users/u-1/info.txt?x-id=PutObject",
                "",
            ),
            &[],
        );
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "user-files", "key": "users/u-1/info.txt"})
        );
        let p = request_parameters(
            "S3",
            "GetObject",
            &request(
                "https://user-files.s3.us-east-1.amazonaws.com/a%20b.txt?versionId=3",
                "",
            ),
            &[],
        );
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "user-files", "key": "a b.txt", "version_id": "3"})
        );
        for (host, bucket) in [
            (
                "reports--use1-az4--x-s3.s3express-use1-az4.us-east-1.amazonaws.com",
                "reports--use1-az4--x-s3",
            ),
            ("logs.s3-fips.dualstack.us-east-1.amazonaws.com", "logs"),
            (
                "my.s3.archive.s3.dualstack.eu-west-1.amazonaws.com",
                "my.s3.archive",
            ),
            ("media.s3-accesspoint.us-east-1.amazonaws.com", "media"),
        ] {
            let p = request_parameters(
                "S3",
                "GetObject",
                &request(&format!("https://{host}/2026/q4.csv?x-id=GetObject"), ""),
                &[],
            );
            assert_eq!(
                Value::Object(p),
                serde_json::json!({"bucket_name": bucket, "key": "2026/q4.csv"}),
                "{host}"
            );
        }
        let p = request_parameters(
            "S3",
            "ListObjectsV2",
            &request(
                "http://127.0.0.1:5000/user-files?list-type=2&prefix=users%2F",
                "",
            ),
            &[],
        );
        assert_eq!(
            Value::Object(p),
            serde_json::json!({"bucket_name": "user-files", "prefix": "users/"})
        );
    }

    #[test]
    fn sqs_sns_lambda_and_user_parameters() {
        let sqs = request(
            "https://sqs.us-east-1.amazonaws.com/",
            r#"{"QueueUrl":"https://sqs/q","MessageBody":"x"}"#,
        );
        assert_eq!(
            request_parameters("SQS", "SendMessage", &sqs, &[])["queue_url"],
            "https://sqs/q"
        );
        let sns = request(
            "https://sns.us-east-1.amazonaws.com/",
            "Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3At&Message=hi",
        );
        assert_eq!(
            request_parameters("SNS", "Publish", &sns, &[])["topic_arn"],
            "arn:aws:sns:us-east-1:1:t"
        );
        let lambda = request(
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-fn/invocations",
            "{}",
        );
        assert_eq!(
            request_parameters("Lambda", "Invoke", &lambda, &[])["function_name"],
            "my-fn"
        );
        let i = XRayInterceptor::new().with_parameter("DynamoDB", "PutItem", "ReturnValues");
        let put = request(
            "https://x/",
            r#"{"TableName":"t","ReturnValues":"ALL_OLD"}"#,
        );
        assert_eq!(
            request_parameters("DynamoDB", "PutItem", &put, &i.extra)["return_values"],
            "ALL_OLD"
        );
        assert!(request_parameters("DynamoDB", "GetItem", &put, &i.extra)
            .get("return_values")
            .is_none());
    }
}
