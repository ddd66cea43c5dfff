//! Finds the line and column of a key path in YAML source.
//!
//! `serde_yaml_ng::Value` keeps no positions, so after the document has been parsed we re-read
//! the same text with `yaml-rust2`'s event parser, which reports a marker for every node, and
//! record where each key (and each value) of the document starts. Errors found after parsing
//! (wrong types, unknown keys, semantic validation) then look their key path up here.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `hub.config.Authenticator.admin_users[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn parse(dotted: &str) -> KeyPath {
        KeyPath(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Seg::Key(s.to_owned()))
                .collect(),
        )
    }

    pub(crate) fn child(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    pub(crate) fn parent(&self) -> KeyPath {
        let mut segs = self.0.clone();
        segs.pop();
        KeyPath(segs)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this path is `other` or one of its ancestors.
    pub(crate) fn is_prefix_of(&self, other: &KeyPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// The dotted form when every segment is a key (`hub.db.url`); `None` with a list index.
    pub(crate) fn dotted_keys(&self) -> Option<String> {
        let keys: Option<Vec<&str>> = self
            .0
            .iter()
            .map(|seg| match seg {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Index(_) => None,
            })
            .collect();
        keys.map(|k| k.join("."))
    }

    /// The value at this path in `doc`, if there is one.
    pub(crate) fn get<'v>(
        &self,
        doc: &'v serde_yaml_ng::Value,
    ) -> Option<&'v serde_yaml_ng::Value> {
        self.0.iter().try_fold(doc, |node, seg| match seg {
            Seg::Key(k) => node.as_mapping()?.get(k.as_str()),
            Seg::Index(i) => node.as_sequence()?.get(*i),
        })
    }

    /// Remove the value at this path from `doc` (the key from its mapping; a list item is
    /// replaced by `null` so that later indices keep their meaning). Returns whether it was there.
    pub(crate) fn remove(&self, doc: &mut serde_yaml_ng::Value) -> bool {
        let Some((last, parents)) = self.0.split_last() else {
            return false;
        };
        let parent = parents.iter().try_fold(doc, |node, seg| match seg {
            Seg::Key(k) => node.as_mapping_mut()?.get_mut(k.as_str()),
            Seg::Index(i) => node.as_sequence_mut()?.get_mut(*i),
        });
        match (parent, last) {
            (Some(serde_yaml_ng::Value::Mapping(map)), Seg::Key(k)) => {
                map.shift_remove(k.as_str()).is_some()
            }
            (Some(serde_yaml_ng::Value::Sequence(items)), Seg::Index(i)) => {
                match items.get_mut(*i) {
                    Some(item) if !item.is_null() => {
                        *item = serde_yaml_ng::Value::Null;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Pos {
    pub(crate) const START: Pos = Pos { line: 1, column: 1 };

    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 markers: line is 1-based, column 0-based.
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Pos,
    value: Option<Pos>,
    /// The value is an alias (`*name`): its children are not indexed at this path.
    alias: bool,
}

/// Positions of every key path of the first document of a YAML text.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    entries: HashMap<KeyPath, Entry>,
    /// Keys that appear a second time in the same mapping: path and position of the repeat.
    duplicates: Vec<(KeyPath, Pos)>,
}

impl KeyIndex {
    /// Index `yaml`. A text yaml-rust2 cannot parse (which should not happen for a text
    /// serde_yaml_ng accepted) gives a partial index; lookups then fall back to the nearest
    /// enclosing key that was indexed.
    pub(crate) fn build(yaml: &str) -> KeyIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(yaml);
        // Errors are deliberately ignored: whatever was indexed before the error stays usable.
        let _ = parser.load(&mut builder, false);
        KeyIndex {
            entries: builder.entries,
            duplicates: builder.duplicates,
        }
    }

    /// Position of the key itself (`admin_users` in `admin_users: alice`). Falls back to the
    /// closest enclosing key that is present, then to the start of the file.
    pub(crate) fn key_pos(&self, path: &KeyPath) -> Pos {
        self.lookup(path, false)
    }

    /// Position of the value of the key (`alice` in `admin_users: alice`), for type errors,
    /// when the value starts on the key's line; else the key's position.
    #[cfg(test)]
    pub(crate) fn value_pos(&self, path: &KeyPath) -> Pos {
        self.lookup(path, true)
    }

    /// The first key that is repeated within one mapping, with the position of the repeat.
    pub(crate) fn first_duplicate(&self) -> Option<&(KeyPath, Pos)> {
        self.duplicates.first()
    }

    /// Whether the value at `path` is an alias (`*name`).
    #[cfg(test)]
    fn is_alias(&self, path: &KeyPath) -> bool {
        self.entries.get(path).is_some_and(|e| e.alias)
    }

    /// Whether the exact path is present in the text.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &KeyPath) -> bool {
        self.entries.contains_key(path)
    }

    /// Position of exactly `path` (no fallback to an enclosing key): the key, or with
    /// `prefer_value` its value when that starts on the key's line.
    pub(crate) fn exact(&self, path: &KeyPath, prefer_value: bool) -> Option<Pos> {
        self.entries
            .get(path)
            .map(|entry| match (prefer_value, entry.value) {
                (true, Some(v)) if v.line == entry.key.line => v,
                _ => entry.key,
            })
    }

    /// The entries under `prefix`, with `prefix` taken off their paths (a file's subtree read
    /// as if it were the whole file; positions stay those of the file).
    pub(crate) fn rebase(self, prefix: &KeyPath) -> KeyIndex {
        let strip = |path: &KeyPath| -> Option<KeyPath> {
            (path.0.len() > prefix.0.len() && prefix.is_prefix_of(path))
                .then(|| KeyPath(path.0[prefix.0.len()..].to_vec()))
        };
        KeyIndex {
            entries: self
                .entries
                .iter()
                .filter_map(|(k, v)| strip(k).map(|k| (k, *v)))
                .collect(),
            duplicates: self
                .duplicates
                .iter()
                .filter_map(|(k, p)| strip(k).map(|k| (k, *p)))
                .collect(),
        }
    }

    fn lookup(&self, path: &KeyPath, prefer_value: bool) -> Pos {
        let mut segs = path.0.as_slice();
        loop {
            if segs.is_empty() {
                return Pos::START;
            }
            if let Some(pos) = self.exact(&KeyPath(segs.to_vec()), prefer_value) {
                return pos;
            }
            segs = &segs[..segs.len() - 1];
        }
    }
}

enum Frame {
    /// A mapping; `key` is the key whose value comes next (None while a key is expected, or
    /// for a non-scalar key which we do not index).
    Map {
        key: Option<String>,
        awaiting_value: bool,
    },
    Seq {
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    entries: HashMap<KeyPath, Entry>,
    duplicates: Vec<(KeyPath, Pos)>,
    stack: Vec<Frame>,
    /// The path of the node currently open at each stack depth (parallel to `stack`).
    paths: Vec<Option<KeyPath>>,
    /// Depth of nested nodes inside a complex (non-scalar) mapping key, which are not indexed.
    skip: usize,
    done: bool,
}

impl Builder {
    fn current_path(&self) -> Option<KeyPath> {
        match self.paths.last() {
            None => Some(KeyPath::default()),
            Some(p) => p.clone(),
        }
    }

    /// A node starts at `pos`. Returns the path of that node (None if not indexable) and records
    /// its position. `scalar_text` is Some for a scalar node.
    fn node_start(
        &mut self,
        pos: Pos,
        scalar_text: Option<&str>,
        is_alias: bool,
    ) -> Option<KeyPath> {
        let parent_path = self.current_path();
        match self.stack.last_mut() {
            None => Some(KeyPath::default()),
            Some(Frame::Seq { next }) => {
                let path = parent_path.map(|p| {
                    let mut segs = p.0;
                    segs.push(Seg::Index(*next));
                    KeyPath(segs)
                });
                if let Some(path) = &path {
                    self.entries.entry(path.clone()).or_insert(Entry {
                        key: pos,
                        value: Some(pos),
                        alias: is_alias,
                    });
                }
                path
            }
            Some(Frame::Map {
                key,
                awaiting_value,
            }) => {
                if *awaiting_value {
                    let path = match (parent_path, key.as_deref()) {
                        (Some(p), Some(k)) => Some(p.child(k)),
                        _ => None,
                    };
                    if let Some(path) = &path {
                        if let Some(entry) = self.entries.get_mut(path) {
                            if entry.value.is_none() {
                                entry.value = Some(pos);
                                entry.alias = is_alias;
                            }
                        }
                    }
                    path
                } else {
                    *key = scalar_text.map(str::to_owned);
                    if let (Some(p), Some(k)) = (parent_path, scalar_text) {
                        let path = p.child(k);
                        match self.entries.entry(path) {
                            std::collections::hash_map::Entry::Occupied(e) => {
                                self.duplicates.push((e.key().clone(), pos));
                            }
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(Entry {
                                    key: pos,
                                    value: None,
                                    alias: false,
                                });
                            }
                        }
                    }
                    // A key node itself has no indexable children.
                    None
                }
            }
        }
    }

    /// A node (scalar, alias, or a whole collection) has finished: advance the parent.
    fn node_end(&mut self) {
        match self.stack.last_mut() {
            None => self.done = true,
            Some(Frame::Seq { next }) => *next += 1,
            Some(Frame::Map {
                key,
                awaiting_value,
            }) => {
                if *awaiting_value {
                    *key = None;
                }
                *awaiting_value = !*awaiting_value;
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        let pos = Pos::from_marker(mark);
        if self.skip > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skip += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.skip -= 1;
                    if self.skip == 0 {
                        self.node_end();
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(text, ..) => {
                self.node_start(pos, Some(&text), false);
                self.node_end();
            }
            Event::Alias(_) => {
                self.node_start(pos, None, true);
                self.node_end();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = matches!(
                    self.stack.last(),
                    Some(Frame::Map {
                        awaiting_value: false,
                        ..
                    })
                );
                if is_key {
                    // Complex key: record nothing for it, skip its subtree.
                    self.node_start(pos, None, false);
                    self.skip = 1;
                    return;
                }
                let path = self.node_start(pos, None, false);
                self.paths.push(path);
                self.stack.push(match ev {
                    Event::MappingStart(..) => Frame::Map {
                        key: None,
                        awaiting_value: false,
                    },
                    _ => Frame::Seq { next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.paths.pop();
                self.node_end();
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

/// One step of a key path, for [`KeyPositions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySeg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A list index.
    Index(usize),
}

/// Where the keys of a YAML text are: for tools that check values themselves (a JSON schema)
/// and need to point at the line of a key path.
#[derive(Debug, Default)]
pub struct KeyPositions(KeyIndex);

impl KeyPositions {
    /// Index the keys of `yaml` (a text that is not YAML gives what could be read).
    pub fn of(yaml: &str) -> KeyPositions {
        KeyPositions(KeyIndex::build(yaml))
    }

    fn path(segs: &[KeySeg<'_>]) -> KeyPath {
        KeyPath(
            segs.iter()
                .map(|s| match s {
                    KeySeg::Key(k) => Seg::Key((*k).to_owned()),
                    KeySeg::Index(i) => Seg::Index(*i),
                })
                .collect(),
        )
    }

    /// The 1-based (line, column) of exactly this key path, if the text spells it out.
    pub fn exact(&self, segs: &[KeySeg<'_>]) -> Option<(usize, usize)> {
        self.0
            .exact(&Self::path(segs), false)
            .map(|p| (p.line, p.column))
    }

    /// The 1-based (line, column) of the key path, else of its closest enclosing key that the
    /// text spells out, else (1, 1).
    pub fn find(&self, segs: &[KeySeg<'_>]) -> (usize, usize) {
        let pos = self.0.key_pos(&Self::path(segs));
        (pos.line, pos.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
hub:
  config:
    Authenticator:
      admin_users:
        - alice
        - \"bob\"
  db: {type: postgres, url: \"postgresql://x\"}
singleuser:
  startTimeout: 10
";

    fn p(s: &str) -> KeyPath {
        KeyPath::parse(s)
    }

    #[test]
    fn finds_block_keys() {
        let idx = KeyIndex::build(DOC);
        assert_eq!(idx.key_pos(&p("hub")), Pos { line: 2, column: 1 });
        assert_eq!(
            idx.key_pos(&p("hub.config.Authenticator.admin_users")),
            Pos { line: 5, column: 7 }
        );
        assert_eq!(
            idx.value_pos(&p("singleuser.startTimeout")),
            Pos {
                line: 10,
                column: 17
            }
        );
    }

    #[test]
    fn finds_sequence_items_and_flow_keys() {
        let idx = KeyIndex::build(DOC);
        let mut item = p("hub.config.Authenticator.admin_users");
        item.0.push(Seg::Index(1));
        assert_eq!(
            idx.key_pos(&item),
            Pos {
                line: 7,
                column: 11
            }
        );
        assert_eq!(
            idx.key_pos(&p("hub.db.url")),
            Pos {
                line: 8,
                column: 24
            }
        );
        assert!(idx.contains(&p("hub.db.type")));
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let idx = KeyIndex::build(DOC);
        assert_eq!(
            idx.key_pos(&p("singleuser.defaultUrl")),
            Pos { line: 9, column: 1 }
        );
        assert_eq!(idx.key_pos(&p("nothing.here")), Pos::START);
    }

    #[test]
    fn records_duplicate_keys() {
        let idx = KeyIndex::build("a:\n  b: 1\n  c: 2\n  b: 3\n");
        let (path, pos) = idx.first_duplicate().unwrap();
        assert_eq!(path.to_string(), "a.b");
        assert_eq!(*pos, Pos { line: 4, column: 3 });
    }

    #[test]
    fn value_position_only_on_the_key_line() {
        let idx = KeyIndex::build("a: 1\nb:\n  c: 2\nd:\n");
        assert_eq!(idx.value_pos(&p("a")), Pos { line: 1, column: 4 });
        assert_eq!(idx.value_pos(&p("b")), Pos { line: 2, column: 1 });
        assert_eq!(idx.value_pos(&p("d")), Pos { line: 4, column: 1 });
    }

    #[test]
    fn complex_keys_are_skipped() {
        let idx = KeyIndex::build("? [a, b]\n: 1\nc: 2\n");
        assert_eq!(idx.key_pos(&p("c")), Pos { line: 3, column: 1 });
    }

    #[test]
    fn displays_paths() {
        let mut path = p("a.b");
        path.0.push(Seg::Index(3));
        path.0.push(Seg::Key("c".into()));
        assert_eq!(path.to_string(), "a.b[3].c");
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use serde_yaml_ng::Value;

    fn walk(
        v: &Value,
        path: &KeyPath,
        idx: &KeyIndex,
        lines: &[&str],
        file: &str,
        checked: &mut usize,
    ) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    let Some(k) = k.as_str() else { continue };
                    let p = path.child(k);
                    assert!(idx.contains(&p), "{file}: `{p}` not indexed");
                    let pos = idx.key_pos(&p);
                    let line = lines[pos.line - 1];
                    assert!(
                        line.contains(k),
                        "{file}:{}: line {line:?} does not hold key `{p}`",
                        pos.line
                    );
                    *checked += 1;
                    if !idx.is_alias(&p) {
                        walk(child, &p, idx, lines, file, checked);
                    }
                }
            }
            Value::Sequence(items) => {
                for (i, child) in items.iter().enumerate() {
                    let mut segs = path.0.clone();
                    segs.push(Seg::Index(i));
                    let p = KeyPath(segs);
                    if !idx.is_alias(&p) {
                        walk(child, &p, idx, lines, file, checked);
                    }
                }
            }
            _ => {}
        }
    }

    /// Every key of the real-world YAML files in the shared fixtures is found on the right line.
    #[test]
    fn indexes_every_key_of_the_reference_values_files() {
        let root = crate::fixtures::fixture("").unwrap_or_else(|e| panic!("{e}"));
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 10, "too few YAML fixtures: {files:?}");
        let mut checked = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            // Helm templates and multi-document files are not plain values files.
            let Ok(value) = serde_yaml_ng::from_str::<Value>(&text) else {
                continue;
            };
            let idx = KeyIndex::build(&text);
            let lines: Vec<&str> = text.lines().collect();
            walk(
                &value,
                &KeyPath::default(),
                &idx,
                &lines,
                &file.display().to_string(),
                &mut checked,
            );
        }
        assert!(checked > 1000, "only {checked} keys checked");
    }
}
