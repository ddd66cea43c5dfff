//! JSON Schema checks (the cluster schema, basehub's values schema) with findings that point
//! at the file and line of the offending key.

use hubfleet_config::{KeyPositions, KeySeg};
use serde_json::Value as Json;

use crate::finding::Finding;
use crate::repo::Repo;

/// A compiled schema and its document (for the keys a mapping may have).
pub struct Schema {
    validator: jsonschema::Validator,
    doc: Json,
    /// The file it came from, for messages.
    pub file: String,
}

/// 2i2c's cluster schema, with two changes: every item of `hubs` is checked (upstream's
/// `items:` is a one-element list, which JSON Schema draft-07 reads as "check the first item
/// only"), and `provider` may also be `local` (this machine).
pub fn cluster_schema(repo: &Repo) -> Result<Schema, Finding> {
    let path = repo.cluster_schema_path();
    let file = repo.rel(&path);
    let mut doc = load(&path, &file)?;
    if let Some(hubs) = doc.pointer_mut("/properties/hubs") {
        if let Some(Json::Array(items)) = hubs.get("items").cloned() {
            if let Some(first) = items.into_iter().next() {
                hubs["items"] = first;
            }
        }
    }
    if let Some(Json::Array(providers)) = doc.pointer_mut("/properties/provider/enum") {
        if !providers.iter().any(|p| p == "local") {
            providers.push(Json::String("local".into()));
        }
    }
    compile(doc, file)
}

/// basehub's `values.schema.yaml` in `chart_dir`, if the chart has one.
pub fn values_schema(chart_dir: &std::path::Path, repo: &Repo) -> Option<Result<Schema, Finding>> {
    let path = chart_dir.join("values.schema.yaml");
    if !path.is_file() {
        return None;
    }
    let file = repo.rel(&path);
    Some(load(&path, &file).and_then(|doc| compile(doc, file)))
}

fn load(path: &std::path::Path, file: &str) -> Result<Json, Finding> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Finding::error(
            file,
            (1, 1),
            format!("cannot read the schema: {e}; the repository should have it"),
        )
    })?;
    let doc = hubfleet_config::values::parse_yaml(file, &text)
        .map_err(|e| Finding::error(file, (1, 1), e.to_string()))?;
    serde_json::to_value(doc).map_err(|e| Finding::error(file, (1, 1), e.to_string()))
}

fn compile(doc: Json, file: String) -> Result<Schema, Finding> {
    let validator = jsonschema::draft7::new(&doc)
        .map_err(|e| Finding::error(&file, (1, 1), format!("not a valid JSON schema: {e}")))?;
    Ok(Schema {
        validator,
        doc,
        file,
    })
}

/// A step of a JSON pointer into `doc`, as a key path segment.
fn segments(pointer: &str, doc: &Json) -> Vec<(String, Option<usize>)> {
    let mut out = Vec::new();
    let mut at = Some(doc);
    for raw in pointer.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        let index = match at {
            Some(Json::Array(_)) => key.parse::<usize>().ok(),
            _ => None,
        };
        at = match (at, index) {
            (Some(Json::Array(a)), Some(i)) => a.get(i),
            (Some(Json::Object(o)), _) => o.get(&key),
            _ => None,
        };
        out.push((key, index));
    }
    out
}

/// `a.b[2].c` from segments.
pub fn dotted(prefix: &str, segs: &[(String, Option<usize>)]) -> String {
    let mut s = prefix.to_owned();
    for (key, index) in segs {
        match index {
            Some(i) => s.push_str(&format!("[{i}]")),
            None => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
        }
    }
    s
}

fn key_segs(segs: &[(String, Option<usize>)]) -> Vec<KeySeg<'_>> {
    segs.iter()
        .map(|(k, i)| match i {
            Some(i) => KeySeg::Index(*i),
            None => KeySeg::Key(k),
        })
        .collect()
}

/// Where a key path of the checked document was written: (file, (line, column)).
pub trait Locate {
    /// The file and position of `segs` (or of its closest enclosing key).
    fn locate(&self, segs: &[KeySeg<'_>]) -> (String, (usize, usize));
}

/// One file's keys.
pub struct OneFile<'a> {
    /// The file, for findings.
    pub file: &'a str,
    /// Its keys.
    pub positions: &'a KeyPositions,
}

impl Locate for OneFile<'_> {
    fn locate(&self, segs: &[KeySeg<'_>]) -> (String, (usize, usize)) {
        (self.file.to_owned(), self.positions.find(segs))
    }
}

/// Every schema violation of `doc`, located with `at`; key paths start with `prefix`.
pub fn check_with(schema: &Schema, doc: &Json, at: &dyn Locate, prefix: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for error in schema.validator.iter_errors(doc) {
        let segs = segments(error.instance_path.as_str(), doc);
        if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
            &error.kind
        {
            // Point at each unexpected key, with the keys that are allowed there.
            let schema_at = error
                .schema_path
                .as_str()
                .strip_suffix("/additionalProperties")
                .and_then(|p| schema.doc.pointer(p));
            let allowed: Vec<&str> = schema_at
                .and_then(|s| s.get("properties"))
                .and_then(Json::as_object)
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            for key in unexpected {
                let mut path = segs.clone();
                path.push((key.clone(), None));
                let (file, pos) = at.locate(&key_segs(&path));
                let hint = match hubfleet_config::suggest::nearest(key, &allowed) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                findings.push(
                    Finding::error(
                        file,
                        pos,
                        format!(
                            "unknown key `{key}`; {hint}allowed here: {} (schema: {})",
                            allowed
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            schema.file
                        ),
                    )
                    .key(dotted(prefix, &path)),
                );
            }
            continue;
        }
        let (file, pos) = at.locate(&key_segs(&segs));
        let mut message = error.to_string();
        if message.len() > 300 {
            message.truncate(300);
            message.push('…');
        }
        findings.push(
            Finding::error(file, pos, format!("{message} (schema: {})", schema.file))
                .key(dotted(prefix, &segs)),
        );
    }
    findings
}

/// [`check_with`] for a document read from one file.
pub fn check(
    schema: &Schema,
    doc: &Json,
    file: &str,
    positions: &KeyPositions,
    prefix: &str,
) -> Vec<Finding> {
    check_with(schema, doc, &OneFile { file, positions }, prefix)
}

impl Schema {
    /// The keys of the object at `pointer` in the schema document.
    pub fn keys_at(&self, pointer: &str) -> Vec<String> {
        self.doc
            .pointer(pointer)
            .and_then(Json::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}
