//! Values read into k8s-openapi's types, strictly: a wrong type names its key path, and so does a
//! field the type does not have (k8s-openapi's types ignore unknown fields, so what was given is
//! compared with what the type kept; the API server would drop such a field, or refuse it).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::KubeError;

/// `json` (what `key` holds) as a `T`, refusing wrong types and unknown fields.
pub(crate) fn typed<T: DeserializeOwned + Serialize>(
    key: &str,
    json: &Json,
) -> Result<T, KubeError> {
    let value: T = serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        KubeError::invalid(join(key, &path), e.into_inner().to_string())
    })?;
    let kept = serde_json::to_value(&value)
        .map_err(|e| KubeError::invalid(key, format!("cannot be written back: {e}")))?;
    if let Some(path) = first_unknown(json, &kept, String::new()) {
        return Err(KubeError::invalid(
            join(key, &path),
            "unknown field: Kubernetes has no such field here (check its spelling and where it sits)",
        ));
    }
    Ok(value)
}

/// A k8s-openapi object as JSON (what `render k8s` prints).
pub(crate) fn to_json<T: Serialize>(value: &T) -> Json {
    // k8s-openapi's types serialize to JSON without fail (strings, numbers, maps).
    serde_json::to_value(value).unwrap_or(Json::Null)
}

fn join(key: &str, path: &str) -> String {
    match path {
        "" | "." => key.to_owned(),
        p if p.starts_with('[') => format!("{key}{p}"),
        p => format!("{key}.{p}"),
    }
}

/// The path of the first field of `given` (not `null`) that `kept` lacks.
fn first_unknown(given: &Json, kept: &Json, at: String) -> Option<String> {
    match (given, kept) {
        (Json::Object(given), Json::Object(kept)) => given.iter().find_map(|(name, value)| {
            let here = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            match kept.get(name) {
                _ if value.is_null() => None,
                None => Some(here),
                Some(kept) => first_unknown(value, kept, here),
            }
        }),
        (Json::Array(given), Json::Array(kept)) => given
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (g, k))| first_unknown(g, k, format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Toleration;
    use serde_json::json;

    #[test]
    fn wrong_types_and_unknown_fields_name_the_key() {
        let ok: Vec<Toleration> = typed(
            "hub.tolerations",
            &json!([{"key": "a", "effect": "NoSchedule"}]),
        )
        .unwrap();
        assert_eq!(ok[0].key.as_deref(), Some("a"));
        let e = typed::<Vec<Toleration>>("hub.tolerations", &json!([{"key": "a", "efect": "x"}]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hub.tolerations[0].efect: unknown field"),
            "{e}"
        );
        let e = typed::<Vec<Toleration>>("hub.tolerations", &json!([{"key": 3}]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hub.tolerations[0].key: invalid type"), "{e}");
        let nulls: Vec<Toleration> =
            typed("hub.tolerations", &json!([{"key": "a", "value": null}])).unwrap();
        assert_eq!(nulls[0].value, None);
    }
}
