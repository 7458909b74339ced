//! Where a service outside Lambda runs, for its segments' `origin` and `aws` fields:
//! an ECS container (from the task metadata endpoint), an EC2 instance (from IMDSv2,
//! when asked for: it costs a round trip to find out it is not one), or unknown.
//!
//! Found out once, on a thread of its own with short timeouts: requests never wait
//! for it, and those served before it is known carry no `origin`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::document::{Origin, Platform};
use crate::plain_http::{self, Endpoint};

/// Set by ECS in every container: the task metadata endpoint (version 4).
const ENV_ECS_METADATA: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The AWS SDKs' override of the instance metadata endpoint.
const ENV_IMDS_ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// How long each metadata call may take.
const TIMEOUT: Duration = Duration::from_millis(1000);

/// Where to look.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    /// ECS's task metadata endpoint, when running on ECS.
    pub ecs: Option<String>,
    /// The instance metadata endpoint, when EC2 is to be asked.
    pub ec2: Option<String>,
}

impl Sources {
    /// From the environment; EC2 only when `ec2` is set.
    pub(crate) fn from_env(ec2: bool) -> Self {
        Sources {
            ecs: std::env::var(ENV_ECS_METADATA)
                .ok()
                .filter(|s| !s.is_empty()),
            ec2: ec2.then(|| {
                std::env::var(ENV_IMDS_ENDPOINT)
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned())
            }),
        }
    }
}

/// The origin, once known.
pub(crate) type Found = Arc<OnceLock<Arc<Origin>>>;

/// Starts finding out where this process runs.
pub(crate) fn detect(sources: Sources) -> Found {
    let found: Found = Arc::default();
    if sources.ecs.is_none() && sources.ec2.is_none() {
        let _ = found.set(Arc::new(Origin::new(&Platform::Unknown)));
        return found;
    }
    let slot = found.clone();
    let spawned = std::thread::Builder::new()
        .name("xray-platform".into())
        .spawn(move || {
            let _ = slot.set(Arc::new(Origin::new(&probe(&sources))));
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "X-Ray: could not look up where this service runs");
        let _ = found.set(Arc::new(Origin::new(&Platform::Unknown)));
    }
    found
}

fn probe(sources: &Sources) -> Platform {
    if let Some(uri) = &sources.ecs {
        return ecs(uri);
    }
    if let Some(endpoint) = &sources.ec2 {
        match ec2(endpoint) {
            Ok(p) => return p,
            Err(e) => {
                tracing::debug!(error = %e, "X-Ray: no EC2 instance metadata; origin unknown")
            }
        }
    }
    Platform::Unknown
}

/// The container, from ECS's task metadata endpoint; the host name if that fails (the
/// variable alone says this is ECS).
fn ecs(uri: &str) -> Platform {
    #[derive(Deserialize, Default)]
    struct Container {
        #[serde(rename = "Name")]
        name: Option<String>,
        #[serde(rename = "DockerId")]
        docker_id: Option<String>,
        #[serde(rename = "ContainerARN")]
        arn: Option<String>,
    }
    let container: Container = Endpoint::parse(uri)
        .and_then(|to| plain_http::send("GET", &to, &[], b"", TIMEOUT)?.ok())
        .and_then(|body| Ok(serde_json::from_slice(&body)?))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "X-Ray: ECS task metadata could not be read; the container is named after the host");
            Container::default()
        });
    Platform::Ecs {
        container: container.name.or_else(|| std::env::var("HOSTNAME").ok()),
        container_id: container.docker_id,
        container_arn: container.arn,
    }
}

/// The instance, from IMDSv2: a session token, then the identity document.
fn ec2(endpoint: &str) -> std::io::Result<Platform> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Identity {
        instance_id: Option<String>,
        availability_zone: Option<String>,
        instance_type: Option<String>,
        image_id: Option<String>,
    }
    let base = Endpoint::parse(endpoint.trim_end_matches('/'))?;
    let token = plain_http::send(
        "PUT",
        &base.with_path("/latest/api/token"),
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        b"",
        TIMEOUT,
    )?
    .ok()?;
    let token = String::from_utf8_lossy(&token);
    let identity = plain_http::send(
        "GET",
        &base.with_path("/latest/dynamic/instance-identity/document"),
        &[("X-aws-ec2-metadata-token", token.trim())],
        b"",
        TIMEOUT,
    )?
    .ok()?;
    let id: Identity = serde_json::from_slice(&identity)?;
    Ok(Platform::Ec2 {
        instance_id: id.instance_id,
        availability_zone: id.availability_zone,
        instance_size: id.instance_type,
        ami_id: id.image_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A metadata endpoint answering each connection with the next of `bodies`, after
    /// checking the request line starts as expected.
    fn endpoint(answers: Vec<(&'static str, &'static str)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (expect, body) in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = if request.starts_with(expect) {
                    "200 OK"
                } else {
                    "400 Bad"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn an_ecs_container_from_task_metadata() {
        let url = endpoint(vec![(
            "GET /v4/abc HTTP/1.1",
            r#"{"DockerId":"d0c","Name":"web","ContainerARN":"arn:aws:ecs:eu-west-1:1:container/x"}"#,
        )]);
        let p = probe(&Sources {
            ecs: Some(format!("{url}/v4/abc")),
            ec2: None,
        });
        assert_eq!(
            p,
            Platform::Ecs {
                container: Some("web".into()),
                container_id: Some("d0c".into()),
                container_arn: Some("arn:aws:ecs:eu-west-1:1:container/x".into()),
            }
        );
    }

    #[test]
    fn an_ec2_instance_from_imdsv2() {
        let url = endpoint(vec![
            ("PUT /latest/api/token", "tok"),
            (
                "GET /latest/dynamic/instance-identity/document",
                r#"{"instanceId":"i-1","availabilityZone":"eu-west-1a","instanceType":"t4g.small","imageId":"ami-9"}"#,
            ),
        ]);
        let p = probe(&Sources {
            ecs: None,
            ec2: Some(url),
        });
        assert_eq!(
            p,
            Platform::Ec2 {
                instance_id: Some("i-1".into()),
                availability_zone: Some("eu-west-1a".into()),
                instance_size: Some("t4g.small".into()),
                ami_id: Some("ami-9".into()),
            }
        );
    }

    #[test]
    fn unreachable_endpoints_leave_the_origin_unknown_without_waiting_long() {
        // A bound but silent port: connections hang until the timeout.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = std::time::Instant::now();
        let p = probe(&Sources {
            ecs: None,
            ec2: Some(format!("http://{}", silent.local_addr().unwrap())),
        });
        assert_eq!(p, Platform::Unknown);
        assert!(started.elapsed() < Duration::from_secs(5));
        let found = detect(Sources::default());
        assert!(
            found.get().is_some(),
            "known at once when there is nothing to ask"
        );
    }
}
