//! A separate proxy driven through its REST API (configurable-http-proxy's, which `hubfleet
//! proxy` also speaks), as upstream's `ConfigurableHTTPProxy` with `should_start: false`:
//! `hub.config.ConfigurableHTTPProxy.api_url`.
//!
//! The hub's route table stays the routes it wants; this loop makes the proxy's match it every
//! [`SYNC_EVERY`]: it adds what is missing (all of it, after the proxy restarted), fixes
//! targets, removes the hub's routes that should be gone (those with `jupyterhub: true` in
//! their data, never anyone else's), and copies the proxy's per-route activity back for the
//! culler. The hub's own route `/` targets the address the hub is reached at.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hubfleet_proxy::{RouteTable, HUB_TARGET};
use serde_json::{Map, Value};

/// How often the proxy's routes are compared with the hub's: the most a restarted proxy is
/// without routes, plus the time to add them.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

/// Where the proxy's API is, and its token.
#[derive(Clone, Debug)]
pub struct ExternalProxy {
    /// e.g. `http://127.0.0.1:8001` (without `/api`).
    pub api_url: String,
    pub auth_token: String,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("cannot reach the proxy's API at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the proxy's API at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

struct Client {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, SyncError> {
        let url = format!("{}/api/routes{path}", self.api);
        let mut request = self
            .http
            .request(method, &url)
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| SyncError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(SyncError::Refused {
                url,
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        Ok(serde_json::from_str(&text).ok())
    }
}

/// Keep the proxy's routes those of `routes`, for as long as the hub runs.
pub fn start(proxy: ExternalProxy, routes: RouteTable, hub_url: String) {
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
        api: proxy.api_url.trim_end_matches('/').to_string(),
        token: proxy.auth_token,
    };
    tokio::spawn(async move {
        let mut reachable = true;
        let mut synced_once = false;
        loop {
            let began = Instant::now();
            match sync(&client, &routes, &hub_url).await {
                Ok(added) => {
                    if !reachable {
                        tracing::info!(api = %client.api, "the proxy's API answers again");
                    }
                    reachable = true;
                    if added > 0 && synced_once {
                        tracing::warn!(
                            added,
                            seconds = began.elapsed().as_secs_f64(),
                            "the proxy was missing routes (restarted?): added them again"
                        );
                    } else if added > 0 {
                        tracing::info!(added, "routes sent to the proxy");
                    }
                    synced_once = true;
                }
                Err(e) => {
                    if reachable {
                        tracing::warn!(error = %e, "updating the proxy's routes; trying again");
                    }
                    reachable = false;
                }
            }
            tokio::time::sleep(SYNC_EVERY).await;
        }
    });
}

/// One comparison: the number of routes added or changed.
async fn sync(client: &Client, routes: &RouteTable, hub_url: &str) -> Result<usize, SyncError> {
    let actual: BTreeMap<String, Value> = match client.send(reqwest::Method::GET, "", None).await? {
        Some(Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    let wanted = routes.all();
    let mut added = 0;
    for (path, route) in &wanted {
        let target = if route.target == HUB_TARGET {
            hub_url
        } else {
            route.target.as_str()
        };
        match actual.get(path) {
            Some(there) if there.get("target").and_then(Value::as_str) == Some(target) => {
                if let Some(at) = there
                    .get("last_activity")
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                {
                    routes.note_activity(path, at.with_timezone(&Utc));
                }
            }
            _ => {
                let mut body: Map<String, Value> = route.data.clone();
                body.insert("target".into(), target.into());
                let body = Value::Object(body);
                client
                    .send(reqwest::Method::POST, &api_path(path), Some(&body))
                    .await?;
                added += 1;
            }
        }
    }
    for (path, there) in &actual {
        let ours = there.get("jupyterhub").and_then(Value::as_bool) == Some(true);
        if ours && !wanted.contains_key(path) {
            client
                .send(reqwest::Method::DELETE, &api_path(path), None)
                .await?;
        }
    }
    Ok(added)
}

/// `/user/alice` → `/user/alice`; `/` → `/` (the API's path for the route `/`).
fn api_path(route: &str) -> String {
    if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    }
}
