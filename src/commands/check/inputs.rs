//! What `check` reads: files, directories (symlinks followed, loops refused) and stdin (`-`); YAML
//! or JSON documents, Lists of any kind opened. Services and Namespaces are kept with where they were
//! read; a document that cannot be read is kept as a problem with its position, and the rest are
//! still read.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Service as KubeService};
use serde::Deserialize as _;
use serde_yaml_ng::Value;

use crate::cluster::watch::labels_of;
use crate::commands::report::Source;
use crate::domain::policy::limits::{self, MANIFEST_MAX_BYTES, MANIFEST_MAX_DEPTH};
use crate::domain::service::{Labels, Service};
use crate::domain::yaml_lines::Lines;
use crate::policy_file::read_at_most;

/// The path that names standard input.
pub const STDIN: &str = "-";

/// Everything read, in the order of the inputs.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Services and unreadable documents, in input order.
    pub entries: Vec<Entry>,
    /// Labels of the Namespace objects read, by name.
    pub namespaces: HashMap<String, Labels>,
    /// How many documents were read (empty ones not counted).
    pub documents: usize,
}

/// One Service, or one thing that could not be read (why, without the file: the source names it).
#[derive(Debug)]
pub enum Entry {
    /// A Service and where it was read.
    Service(Source, Box<Service>),
    /// What could not be read, where, and why.
    Problem(Source, String),
}

/// Reads every path, in order; a directory's files in name order.
pub fn read(paths: &[PathBuf]) -> Inputs {
    let mut inputs = Inputs::default();
    let mut walk = Walk::default();
    for path in paths {
        if path.as_os_str() == STDIN {
            let text = read_limited(std::io::stdin().lock());
            inputs.read_text(STDIN, text);
        } else {
            let before = inputs.documents + inputs.entries.len();
            walk.visit(path, &mut inputs);
            if path.is_dir() && inputs.documents + inputs.entries.len() == before {
                let name = path.display().to_string();
                let why = "no .yaml, .yml or .json documents in this directory".to_owned();
                inputs.problem(&name, 0, None, why);
            }
        }
    }
    inputs
}

// === impl Inputs ===

impl Inputs {
    fn problem(&mut self, file: &str, document_index: usize, line: Option<usize>, why: String) {
        let source = Source {
            file: file.to_owned(),
            document_index,
            line,
        };
        self.entries.push(Entry::Problem(source, why));
    }

    fn read_text(&mut self, file: &str, text: Result<String, String>) {
        let text = match text {
            Ok(text) => text,
            Err(why) => return self.problem(file, 0, None, why),
        };
        // Before the parser, whose cost grows with the square of the nesting (see `limits`).
        if let Err(e) = limits::check_depth(&text, MANIFEST_MAX_DEPTH) {
            return self.problem(file, 0, None, e.to_string());
        }
        // Lines of documents and of List items; not a path for every node of a large file.
        let lines = Lines::to_depth(&text, 2);
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            match Value::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) => {
                    self.documents += 1;
                    let at = |path: &str| Source {
                        file: file.to_owned(),
                        document_index: index,
                        line: lines.line(index, path),
                    };
                    self.read_object(&value, None, "", &at);
                }
                Err(e) => {
                    // The parser cannot find its way back into a stream after a syntax error.
                    let line = e.location().map(|l| l.line());
                    return self.problem(file, index, line, e.to_string());
                }
            }
        }
    }

    /// Keeps a Service or a Namespace; opens a List (`List`, `ServiceList`, … whose items may omit
    /// their kind, as the API's own lists do); skips anything else.
    fn read_object(
        &mut self,
        value: &Value,
        item_of: Option<&str>,
        path: &str,
        at: &dyn Fn(&str) -> Source,
    ) {
        let field = |k: &str| value.get(k).and_then(Value::as_str);
        let Some(kind) = field("kind").or(item_of) else {
            return;
        };
        let api_version = field("apiVersion").unwrap_or(if item_of.is_some() { "v1" } else { "" });
        let name = || {
            value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match (api_version, kind) {
            ("v1", "Service") => match serde_path_to_error::deserialize::<_, KubeService>(value) {
                Ok(svc) => {
                    let svc = Box::new(Service::from(&svc));
                    self.entries.push(Entry::Service(at(path), svc));
                }
                Err(e) => {
                    let why = format!("Service {:?}: {e}", name());
                    self.entries.push(Entry::Problem(at(path), why));
                }
            },
            ("v1", "Namespace") => match serde_path_to_error::deserialize::<_, Namespace>(value) {
                Ok(ns) => {
                    let labels = labels_of(&ns);
                    self.namespaces
                        .insert(ns.metadata.name.unwrap_or_default(), labels);
                }
                Err(e) => {
                    let why = format!("Namespace {:?}: {e}", name());
                    self.entries.push(Entry::Problem(at(path), why));
                }
            },
            (_, list) if list.ends_with("List") => {
                let item_kind = Some(list.trim_end_matches("List")).filter(|k| !k.is_empty());
                let items = value.get("items").and_then(Value::as_sequence);
                for (i, item) in items.into_iter().flatten().enumerate() {
                    let item_path = if path.is_empty() {
                        format!("items[{i}]")
                    } else {
                        format!("{path}.items[{i}]")
                    };
                    self.read_object(item, item_kind, &item_path, at);
                }
            }
            _ => {}
        }
    }
}

/// At most [`MANIFEST_MAX_BYTES`] of UTF-8 text, or why not.
fn read_limited(reader: impl Read) -> Result<String, String> {
    let bytes = read_at_most(reader, MANIFEST_MAX_BYTES)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("larger than {} MiB", MANIFEST_MAX_BYTES >> 20))?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// The directories a walk has read, by canonical path: symlinks are followed, but a directory
/// reached again is not read again, and one reached from inside itself is a loop, refused (it
/// would otherwise be followed for ever, each round adding its files again).
#[derive(Default)]
struct Walk {
    /// Every directory read so far.
    seen: HashSet<PathBuf>,
    /// The directories being read, outermost first: canonical, and as named.
    open: Vec<(PathBuf, PathBuf)>,
}

impl Walk {
    fn visit(&mut self, path: &Path, inputs: &mut Inputs) {
        let name = path.display().to_string();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => return inputs.problem(&name, 0, None, e.to_string()),
        };
        if meta.is_file() {
            let text = std::fs::File::open(path)
                .map_err(|e| e.to_string())
                .and_then(read_limited);
            return inputs.read_text(&name, text);
        }
        let real = match std::fs::canonicalize(path) {
            Ok(real) => real,
            Err(e) => return inputs.problem(&name, 0, None, e.to_string()),
        };
        if let Some((_, named)) = self.open.iter().find(|(open, _)| *open == real) {
            let why = format!("a symlink loop leads back to {}", named.display());
            return inputs.problem(&name, 0, None, why);
        }
        if !self.seen.insert(real.clone()) {
            return; // Read already, through another path: its Services are judged once.
        }
        let children = match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut children: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                children
            }
            Err(e) => return inputs.problem(&name, 0, None, e.to_string()),
        };
        self.open.push((real, path.to_owned()));
        for child in children {
            let is_manifest = child
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if child.is_dir() || is_manifest {
                self.visit(&child, inputs);
            }
        }
        self.open.pop();
    }
}
