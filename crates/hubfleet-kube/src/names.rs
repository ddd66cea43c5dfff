//! The names z2jh's chart gives its objects (`templates/_helpers-names.tpl`), which the hub reads
//! from its ConfigMap (`z2jh.get_name`): the hub's Service, the user scheduler, the priority
//! class, the Secret of `singleuser.extraFiles`, the image pull secret.

use hubfleet_config::values::Values;
use serde_yaml_ng::Value;

/// The chart's name-templates for one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartNames {
    /// `jupyterhub.fullname`: `fullnameOverride`, else the release name (when it contains the
    /// chart's name) or `<release>-<chart>`.
    pub fullname: String,
    release: String,
}

impl ChartNames {
    /// The names for the values of a release (`Release.Name`, `Chart.Name` set in them).
    pub fn new(values: &Values, chart_name: &str, release: &str) -> ChartNames {
        let fullname = match values.get("fullnameOverride") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                let name = match values.get("nameOverride") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => chart_name.to_owned(),
                };
                if release.contains(&name) {
                    release.to_owned()
                } else {
                    format!("{release}-{name}")
                }
            }
        };
        ChartNames {
            fullname,
            release: release.to_owned(),
        }
    }

    fn dashed(&self, short: &str) -> String {
        if self.fullname.is_empty() {
            short.to_owned()
        } else {
            format!("{}-{short}", self.fullname)
        }
    }

    /// The hub's Service (`hub`).
    pub fn hub(&self) -> String {
        self.dashed("hub")
    }

    /// The hub's SQLite PVC (`hub-db-dir`).
    pub fn hub_pvc(&self) -> String {
        format!("{}-db-dir", self.hub())
    }

    /// The proxy's Deployment and NetworkPolicy (`proxy`).
    pub fn proxy(&self) -> String {
        self.dashed("proxy")
    }

    /// The proxy's REST API Service (`proxy-api`).
    pub fn proxy_api(&self) -> String {
        format!("{}-api", self.proxy())
    }

    /// The public Service (`proxy-public`).
    pub fn proxy_public(&self) -> String {
        format!("{}-public", self.proxy())
    }

    /// The Ingress (the full name, or `jupyterhub` when that is empty).
    pub fn ingress(&self) -> String {
        if self.fullname.is_empty() {
            "jupyterhub".into()
        } else {
            self.fullname.clone()
        }
    }

    /// The Secret with `singleuser.extraFiles` (`singleuser`).
    pub fn singleuser(&self) -> String {
        self.dashed("singleuser")
    }

    /// The Secret made from `imagePullSecret` (`image-pull-secret`).
    pub fn image_pull_secret(&self) -> String {
        self.dashed("image-pull-secret")
    }

    /// The user scheduler's scheduler name (`user-scheduler`).
    pub fn user_scheduler(&self) -> String {
        if self.fullname.is_empty() {
            format!("{}-user-scheduler", self.release)
        } else {
            self.dashed("user-scheduler")
        }
    }

    /// The PriorityClass of user pods (`priority`).
    pub fn priority(&self) -> String {
        if self.fullname.is_empty() {
            format!("{}-default-priority", self.release)
        } else {
            self.fullname.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_chart_makes_them() {
        let empty = Values::new(serde_yaml_ng::from_str("fullnameOverride: ''").unwrap());
        let n = ChartNames::new(&empty, "jupyterhub", "staging");
        assert_eq!(n.hub(), "hub");
        assert_eq!(n.hub_pvc(), "hub-db-dir");
        assert_eq!(n.proxy_public(), "proxy-public");
        assert_eq!(n.proxy_api(), "proxy-api");
        assert_eq!(n.ingress(), "jupyterhub");
        assert_eq!(n.user_scheduler(), "staging-user-scheduler");
        assert_eq!(n.priority(), "staging-default-priority");
        let none = Values::default();
        let n = ChartNames::new(&none, "jupyterhub", "prod");
        assert_eq!(n.hub(), "prod-jupyterhub-hub");
        assert_eq!(n.priority(), "prod-jupyterhub");
        assert_eq!(n.proxy_public(), "prod-jupyterhub-proxy-public");
        assert_eq!(n.ingress(), "prod-jupyterhub");
        let n = ChartNames::new(&none, "jupyterhub", "my-jupyterhub");
        assert_eq!(n.singleuser(), "my-jupyterhub-singleuser");
    }
}
