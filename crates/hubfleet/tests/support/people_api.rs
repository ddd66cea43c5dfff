//! A hub's people as its REST API shows them (JupyterHub's or hubfleet's), for tests that
//! compare two hubs: users with admin flags, groups, roles; groups with members, roles and
//! properties. Lists are read page by page.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: String, token: &str) -> Api {
        Api {
            client: reqwest::Client::new(),
            base,
            token: token.to_string(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/hub/api{path}", self.base))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every item of a paginated list.
    pub async fn all(&self, what: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut offset = 0;
        loop {
            let response = self
                .client
                .get(format!("{}/hub/api/{what}?offset={offset}", self.base))
                .header("Authorization", format!("token {}", self.token))
                .header("Accept", "application/jupyterhub-pagination+json")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{} {what}", self.base);
            let page: Value = response.json().await.unwrap();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["_pagination"]["next"]["offset"].as_u64() {
                Some(next) => offset = next,
                None => return items,
            }
        }
    }

    /// user → (admin, groups, roles), group → (members, roles, properties), all sorted.
    pub async fn people(&self) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
        let sorted = |v: &Value| {
            let mut list: Vec<String> = v
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            list.sort();
            json!(list)
        };
        let users = self
            .all("users")
            .await
            .into_iter()
            .map(|u| {
                (
                    u["name"].as_str().unwrap().to_string(),
                    json!({"admin": u["admin"], "groups": sorted(&u["groups"]), "roles": sorted(&u["roles"])}),
                )
            })
            .collect();
        let groups = self
            .all("groups")
            .await
            .into_iter()
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_string(),
                    json!({"users": sorted(&g["users"]), "roles": sorted(&g["roles"]), "properties": g["properties"]}),
                )
            })
            .collect();
        (users, groups)
    }
}
