//! sops files: what they are encrypted to, and (with the age backend) decrypting and
//! encrypting them.

use std::io::{Read, Write};
use std::sync::LazyLock;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::Engine;
use regex::Regex;
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha512};

/// AES-256-GCM with sops's 32-byte nonce (not GCM's usual 12).
type Cipher = AesGcm<Aes256, U32>;

/// What sops hashes first when `mac_only_encrypted` is set, so that the two kinds of MAC
/// never match each other.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The sops version written in the files hubfleet encrypts (their format).
const SOPS_FORMAT_VERSION: &str = "3.9.4";

/// The suffix of keys whose values stay in clear (sops's default).
const UNENCRYPTED_SUFFIX: &str = "_unencrypted";

static ENC_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^ENC\[AES256_GCM,data:([^,]*),iv:([^,]+),tag:([^,]+),type:(\w+)\]$")
        .expect("a valid regex")
});

/// Why a sops file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    /// Not a sops file.
    #[error("{file}: not a sops file (it has no `sops:` metadata); encrypt it with `hubfleet fleet secrets encrypt {file}`")]
    NotSops {
        /// The file.
        file: String,
    },
    /// The file is not YAML or JSON.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// No key here can open the file.
    #[error("{file}: cannot decrypt: {reason}")]
    NoKey {
        /// The file.
        file: String,
        /// What the file is encrypted to and which keys were tried.
        reason: String,
    },
    /// The data does not decrypt or its MAC does not match.
    #[error("{file}: {message}")]
    Corrupt {
        /// The file.
        file: String,
        /// What does not match.
        message: String,
    },
}

/// The key services a sops file is encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipients {
    /// age recipients (`age1…`).
    pub age: Vec<String>,
    /// Other backends, each `backend: key id` (`gcp_kms: projects/…`, `kms: arn:aws:kms:…`).
    pub other: Vec<String>,
}

impl Recipients {
    /// What the file is encrypted to, in words.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.age.iter().map(|r| format!("age: {r}")).collect();
        parts.extend(self.other.iter().cloned());
        if parts.is_empty() {
            "no key at all".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Whether `doc` is a sops document, and to whom it is encrypted.
pub fn recipients(doc: &Value) -> Option<Recipients> {
    let meta = doc.as_mapping()?.get("sops")?.as_mapping()?;
    let mut r = Recipients {
        age: Vec::new(),
        other: Vec::new(),
    };
    let items = |k: &str| -> Vec<&Value> {
        meta.get(k)
            .and_then(Value::as_sequence)
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    };
    let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("?").to_owned();
    for v in items("age") {
        r.age.push(field(v, "recipient"));
    }
    for v in items("kms") {
        r.other.push(format!("aws kms: {}", field(v, "arn")));
    }
    for v in items("gcp_kms") {
        r.other
            .push(format!("gcp kms: {}", field(v, "resource_id")));
    }
    for v in items("azure_kv") {
        r.other
            .push(format!("azure key vault: {}", field(v, "vault_url")));
    }
    for v in items("hc_vault") {
        r.other
            .push(format!("vault: {}", field(v, "vault_address")));
    }
    for v in items("pgp") {
        r.other.push(format!("pgp: {}", field(v, "fp")));
    }
    Some(r)
}

/// The text format of a sops file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// JSON when the text starts with `{`, else YAML.
    pub fn of(text: &str) -> Format {
        if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        }
    }

    fn write(self, doc: &Value) -> String {
        match self {
            Format::Yaml => serde_yaml_ng::to_string(doc).unwrap_or_default(),
            Format::Json => {
                // Straight from the document, so that keys keep their order.
                let mut s = serde_json::to_string_pretty(doc).unwrap_or_default();
                s.push('\n');
                s
            }
        }
    }
}

fn parse(file: &str, text: &str) -> Result<Value, SopsError> {
    // JSON is read as YAML (flow style), which keeps the keys in file order: the MAC is over
    // the values in that order. Tabs between tokens are not YAML's, so they become spaces
    // (outside strings JSON has no other use for them; inside strings they are `\t`).
    let text = match Format::of(text) {
        Format::Json => text.replace('\t', " "),
        Format::Yaml => text.to_owned(),
    };
    serde_yaml_ng::from_str(&text).map_err(|e| SopsError::Parse {
        file: file.to_owned(),
        message: format!("not YAML or JSON: {e}"),
    })
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(file: &str, text: &str) -> Result<Vec<u8>, SopsError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| SopsError::Corrupt {
            file: file.to_owned(),
            message: format!("bad base64 in an encrypted value: {e}"),
        })
}

/// The bytes sops hashes and encrypts for a value; `None` for what it does not encrypt.
fn value_bytes(value: &Value) -> Option<(Vec<u8>, &'static str)> {
    match value {
        Value::String(s) => Some((s.as_bytes().to_vec(), "str")),
        Value::Bool(b) => Some((
            if *b {
                b"True".to_vec()
            } else {
                b"False".to_vec()
            },
            "bool",
        )),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some((n.to_string().into_bytes(), "int")),
        Value::Number(n) => Some((
            format!("{}", n.as_f64().unwrap_or(0.0)).into_bytes(),
            "float",
        )),
        _ => None,
    }
}

fn seal(key: &[u8; 32], plain: &[u8], aad: &str) -> Result<String, SopsError> {
    let cipher = Cipher::new(key.into());
    let mut iv = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
    let out = cipher
        .encrypt(
            (&iv).into(),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SopsError::Corrupt {
            file: String::new(),
            message: "AES-GCM encryption failed".into(),
        })?;
    let (data, tag) = out.split_at(out.len() - 16);
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:",
        b64(data),
        b64(&iv),
        b64(tag)
    ))
}

fn open(file: &str, key: &[u8; 32], enc: &str, aad: &str) -> Result<(Vec<u8>, String), SopsError> {
    let c = ENC_VALUE.captures(enc).ok_or_else(|| SopsError::Corrupt {
        file: file.to_owned(),
        message: format!("not a sops value: {enc:.40}"),
    })?;
    let mut data = unb64(file, &c[1])?;
    let iv = unb64(file, &c[2])?;
    let tag = unb64(file, &c[3])?;
    if iv.len() != 32 {
        return Err(SopsError::Corrupt {
            file: file.to_owned(),
            message: format!("an IV of {} bytes; sops writes 32", iv.len()),
        });
    }
    data.extend_from_slice(&tag);
    let cipher = Cipher::new(key.into());
    let plain = cipher
        .decrypt(iv.as_slice().into(), Payload { msg: &data, aad: aad.as_bytes() })
        .map_err(|_| SopsError::Corrupt {
            file: file.to_owned(),
            message: format!("the value at `{}` does not decrypt with the data key (tampered with, or moved to another key)", aad.trim_end_matches(':').replace(':', ".")),
        })?;
    Ok((plain, c[4].to_owned()))
}

fn typed(file: &str, bytes: Vec<u8>, kind: &str) -> Result<Value, SopsError> {
    let text = String::from_utf8(bytes).map_err(|_| SopsError::Corrupt {
        file: file.to_owned(),
        message: "a decrypted value is not UTF-8".into(),
    })?;
    let bad = |what: &str| SopsError::Corrupt {
        file: file.to_owned(),
        message: format!("a decrypted {what} value does not parse: {text:.20}"),
    };
    Ok(match kind {
        "int" => Value::Number(text.parse::<i64>().map_err(|_| bad("int"))?.into()),
        // sops writes JSON's numbers as floats: `3` stays `3` (as sops prints it).
        "float" => match text.parse::<i64>() {
            Ok(i) => Value::Number(i.into()),
            Err(_) => Value::Number(text.parse::<f64>().map_err(|_| bad("float"))?.into()),
        },
        "bool" => Value::Bool(match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => true,
            "false" | "0" | "f" => false,
            _ => return Err(bad("bool")),
        }),
        _ => Value::String(text),
    })
}

/// What is done to each leaf: its value and its sops path.
type LeafFn<'a> = dyn FnMut(&mut Value, &[String]) -> Result<(), SopsError> + 'a;

struct Meta {
    unencrypted_suffix: Option<String>,
    mac_only_encrypted: bool,
}

/// Walk the leaves in file order with their sops path (map keys only; list items keep their
/// list's path).
fn walk(value: &mut Value, path: &mut Vec<String>, f: &mut LeafFn<'_>) -> Result<(), SopsError> {
    match value {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                path.push(key);
                walk(v, path, f)?;
                path.pop();
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for item in items {
                walk(item, path, f)?;
            }
            Ok(())
        }
        Value::Tagged(t) => walk(&mut t.value, path, f),
        leaf => f(leaf, path),
    }
}

fn skipped(path: &[String], suffix: Option<&str>) -> bool {
    suffix.is_some_and(|s| !s.is_empty() && path.iter().any(|k| k.ends_with(s)))
}

/// The data key, from the `age` stanzas of the metadata.
fn data_key(
    file: &str,
    meta: &Mapping,
    identities: &[age::x25519::Identity],
) -> Result<[u8; 32], SopsError> {
    let recipients = recipients(&Value::Mapping({
        let mut m = Mapping::new();
        m.insert(Value::String("sops".into()), Value::Mapping(meta.clone()));
        m
    }))
    .unwrap_or(Recipients {
        age: vec![],
        other: vec![],
    });
    let stanzas: Vec<&str> = meta
        .get("age")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|v| v.get("enc").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if stanzas.is_empty() {
        return Err(SopsError::NoKey {
            file: file.to_owned(),
            reason: format!(
                "it is encrypted to {}; hubfleet decrypts the age backend only",
                recipients.describe()
            ),
        });
    }
    if identities.is_empty() {
        return Err(SopsError::NoKey {
            file: file.to_owned(),
            reason: format!("it is encrypted to {}; no age identity here: set SOPS_AGE_KEY_FILE to a file with one of their keys", recipients.describe()),
        });
    }
    for stanza in stanzas {
        let reader = age::armor::ArmoredReader::new(stanza.as_bytes());
        let Ok(decryptor) = age::Decryptor::new(reader) else {
            continue;
        };
        let Ok(mut plain) = decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        else {
            continue;
        };
        let mut key = Vec::new();
        if plain.read_to_end(&mut key).is_ok() && key.len() == 32 {
            let mut out = [0u8; 32];
            out.copy_from_slice(&key);
            return Ok(out);
        }
    }
    Err(SopsError::NoKey {
        file: file.to_owned(),
        reason: format!(
            "none of the {} age identities here is a recipient ({})",
            identities.len(),
            recipients.describe()
        ),
    })
}

/// Decrypt a sops document with one of `identities`, checking its MAC; the `sops` metadata is
/// taken out.
pub fn decrypt(
    file: &str,
    text: &str,
    identities: &[age::x25519::Identity],
) -> Result<Value, SopsError> {
    let mut doc = parse(file, text)?;
    let Some(Value::Mapping(meta)) = doc.as_mapping_mut().and_then(|m| m.shift_remove("sops"))
    else {
        return Err(SopsError::NotSops {
            file: file.to_owned(),
        });
    };
    let key = data_key(file, &meta, identities)?;
    let meta_of = Meta {
        unencrypted_suffix: meta
            .get("unencrypted_suffix")
            .and_then(Value::as_str)
            .map(str::to_owned),
        mac_only_encrypted: meta
            .get("mac_only_encrypted")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let mut hash = Sha512::new();
    if meta_of.mac_only_encrypted {
        hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    walk(&mut doc, &mut Vec::new(), &mut |leaf, path| {
        let encrypted = matches!(leaf, Value::String(s) if ENC_VALUE.is_match(s));
        if encrypted {
            let aad = format!("{}:", path.join(":"));
            let enc = leaf.as_str().unwrap_or_default().to_owned();
            let (bytes, kind) = open(file, &key, &enc, &aad)?;
            *leaf = typed(file, bytes, &kind)?;
        }
        let counted = !meta_of.mac_only_encrypted
            || (encrypted && !skipped(path, meta_of.unencrypted_suffix.as_deref()));
        if counted {
            if let Some((bytes, _)) = value_bytes(leaf) {
                hash.update(&bytes);
            }
        }
        Ok(())
    })?;
    let lastmodified = match meta.get("lastmodified") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        None => String::new(),
    };
    let mac = meta
        .get("mac")
        .and_then(Value::as_str)
        .ok_or_else(|| SopsError::Corrupt {
            file: file.to_owned(),
            message: "the sops metadata has no `mac`".into(),
        })?;
    let (stored, _) = open(file, &key, mac, &lastmodified)?;
    let computed = hex::encode_upper(hash.finalize());
    if stored != computed.as_bytes() {
        return Err(SopsError::Corrupt {
            file: file.to_owned(),
            message: "the MAC does not match the values: the file was changed without sops (or hubfleet) re-encrypting it".into(),
        });
    }
    Ok(doc)
}

/// Decrypt a sops file's text into the plain text of the same format.
pub fn decrypt_text(
    file: &str,
    text: &str,
    identities: &[age::x25519::Identity],
) -> Result<String, SopsError> {
    let doc = decrypt(file, text, identities)?;
    Ok(Format::of(text).write(&doc))
}

/// Encrypt a plain file's text (YAML or JSON, same format out) for age `recipients`
/// (`age1…`): values of keys ending in `_unencrypted` stay in clear.
pub fn encrypt_text(file: &str, text: &str, recipients: &[String]) -> Result<String, SopsError> {
    let mut doc = parse(file, text)?;
    if recipients::has_sops(&doc) {
        return Err(SopsError::Parse {
            file: file.to_owned(),
            message:
                "it is already encrypted with sops; use `hubfleet fleet secrets edit` to change it"
                    .into(),
        });
    }
    if !doc.is_mapping() {
        return Err(SopsError::Parse {
            file: file.to_owned(),
            message: "the top level must be a mapping of keys".into(),
        });
    }
    let parsed: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| {
            r.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|e| SopsError::Parse {
                    file: file.to_owned(),
                    message: format!("`{r}` is not an age recipient (age1…): {e}"),
                })
        })
        .collect::<Result<_, _>>()?;
    if parsed.is_empty() {
        return Err(SopsError::Parse {
            file: file.to_owned(),
            message: "no age recipient to encrypt to".into(),
        });
    }
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let fail = |message: String| SopsError::Corrupt {
        file: file.to_owned(),
        message,
    };
    let mut hash = Sha512::new();
    walk(&mut doc, &mut Vec::new(), &mut |leaf, path| {
        let Some((bytes, kind)) = value_bytes(leaf) else {
            return Ok(());
        };
        hash.update(&bytes);
        if skipped(path, Some(UNENCRYPTED_SUFFIX)) || bytes.is_empty() && kind == "str" {
            return Ok(());
        }
        let aad = format!("{}:", path.join(":"));
        let sealed =
            seal(&key, &bytes, &aad).map_err(|_| fail("AES-GCM encryption failed".into()))?;
        *leaf = Value::String(format!("{sealed}{kind}]"));
        Ok(())
    })?;
    let lastmodified = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mac = seal(
        &key,
        hex::encode_upper(hash.finalize()).as_bytes(),
        &lastmodified,
    )
    .map_err(|_| fail("AES-GCM encryption failed".into()))?;
    let mut stanzas = Vec::new();
    for recipient in &parsed {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(|e| fail(format!("age: {e}")))?;
        let mut armored = Vec::new();
        let writer =
            age::armor::ArmoredWriter::wrap_output(&mut armored, age::armor::Format::AsciiArmor)
                .map_err(|e| fail(format!("age: {e}")))?;
        let mut w = encryptor
            .wrap_output(writer)
            .map_err(|e| fail(format!("age: {e}")))?;
        w.write_all(&key).map_err(|e| fail(format!("age: {e}")))?;
        w.finish()
            .and_then(|armor| armor.finish())
            .map_err(|e| fail(format!("age: {e}")))?;
        let mut stanza = Mapping::new();
        stanza.insert("recipient".into(), Value::String(recipient.to_string()));
        stanza.insert(
            "enc".into(),
            Value::String(String::from_utf8_lossy(&armored).into_owned()),
        );
        stanzas.push(Value::Mapping(stanza));
    }
    let mut meta = Mapping::new();
    meta.insert("age".into(), Value::Sequence(stanzas));
    meta.insert("lastmodified".into(), Value::String(lastmodified));
    meta.insert("mac".into(), Value::String(format!("{mac}str]")));
    meta.insert(
        "unencrypted_suffix".into(),
        Value::String(UNENCRYPTED_SUFFIX.into()),
    );
    meta.insert("version".into(), Value::String(SOPS_FORMAT_VERSION.into()));
    if let Some(m) = doc.as_mapping_mut() {
        m.insert("sops".into(), Value::Mapping(meta));
    }
    Ok(Format::of(text).write(&doc))
}

mod recipients {
    use serde_yaml_ng::Value;

    pub(super) fn has_sops(doc: &Value) -> bool {
        doc.as_mapping().is_some_and(|m| m.contains_key("sops"))
    }
}
