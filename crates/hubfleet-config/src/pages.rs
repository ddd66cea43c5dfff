//! What the pages show: 2i2c's `custom.homepage.templateVars` (branding on the login page),
//! z2jh's `hub.templateVars` (announcements, any variable for custom templates) and
//! `hub.templatePaths` (directories of template overrides, as upstream's `template_paths`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The template variables that must be strings: the announcements, shown as HTML.
pub const ANNOUNCEMENT_KEYS: &[&str] = &[
    "announcement",
    "announcement_login",
    "announcement_home",
    "announcement_spawn",
    "announcement_token",
];

/// `custom:` — z2jh's free-form section. hubfleet reads `custom.homepage` (2i2c's basehub).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Custom {
    /// `custom.homepage`.
    #[serde(deserialize_with = "null_default")]
    pub homepage: Homepage,
}

/// `custom.homepage`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Homepage {
    /// `custom.homepage.templateVars`: the community's branding.
    #[serde(deserialize_with = "null_default")]
    pub template_vars: HomepageVars,
}

/// `custom.homepage.templateVars`, as 2i2c's basehub schema defines it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomepageVars {
    /// `false` on hubs without a home page (unauthenticated binderhubs); kept for 2i2c files.
    pub enabled: Option<bool>,
    /// The login page sends browsers here instead (a community's own page).
    pub redirect_to: Option<String>,
    /// HTML shown under "Where can I learn more?".
    pub learn_more: Option<String>,
    /// Kept for 2i2c files; `singleuser.defaultUrl` chooses the interface here.
    pub default_url: Option<String>,
    /// Kept for 2i2c files; there is no interface selector.
    pub interface_selector: Option<bool>,
    /// HTML announcements shown on the login page.
    #[serde(deserialize_with = "null_default")]
    pub announcements: Vec<String>,
    pub org: Option<Org>,
    pub designed_by: Option<Credit>,
    pub operated_by: Option<Credit>,
    pub funded_by: Option<Credit>,
}

/// `templateVars.org`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Org {
    pub name: String,
    pub logo_url: Option<String>,
    pub url: Option<String>,
}

/// `templateVars.designed_by` / `operated_by` / `funded_by`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credit {
    pub name: String,
    pub url: Option<String>,
    /// HTML used instead of the name and link.
    pub custom_html: Option<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `hub.templateVars`: any variables; the announcement keys must be strings.
pub(crate) fn template_vars<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, serde_json::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of template variables (`announcement: \"...\"`)")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: serde_json::Value = map.next_value()?;
                if ANNOUNCEMENT_KEYS.contains(&key.as_str())
                    && !(value.is_string() || value.is_null())
                {
                    return Err(de::Error::custom(format!(
                        "`{key}` must be a string (HTML shown on the page), not {value}"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use crate::HubConfig;

    #[test]
    fn branding_announcements_and_overrides_parse() {
        let config = HubConfig::from_yaml_str(
            "hub:\n  templatePaths: [/srv/templates]\n  templateVars:\n    announcement_login: Hello\n    extra: {a: 1}\ncustom:\n  homepage:\n    gitRepoUrl: https://example.org/t.git\n    templateVars:\n      enabled: true\n      org: {name: LEAP, url: 'https://leap.example', logo_url: 'https://leap.example/l.png'}\n      designed_by: {name: 2i2c, url: 'https://2i2c.org'}\n      announcements: ['<p>hi</p>']\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(config.hub.template_paths.len(), 1);
        assert_eq!(config.hub.template_vars["announcement_login"], "Hello");
        let vars = &config.custom.homepage.template_vars;
        assert_eq!(vars.org.as_ref().unwrap().name, "LEAP");
        assert_eq!(vars.announcements, vec!["<p>hi</p>"]);
        assert!(config.warnings.iter().any(|w| w.key.contains("gitRepoUrl")));
    }

    #[test]
    fn bad_branding_is_an_error_with_its_line() {
        let err = HubConfig::from_yaml_str(
            "custom:\n  homepage:\n    templateVars:\n      org: {name: X}\n      colour: red\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t.yaml:5") && err.contains("colour"), "{err}");
        let err =
            HubConfig::from_yaml_str("hub:\n  templateVars:\n    announcement: [a]\n", "t.yaml")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("announcement") && err.contains("string"),
            "{err}"
        );
    }
}
