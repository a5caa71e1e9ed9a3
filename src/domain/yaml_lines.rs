//! Where each node of a YAML stream is: its line, by path, for each document. serde's YAML values
//! carry no positions; this reads the same text with yaml-rust2's event parser, which does, so that
//! a message can name the line of `rules[2].match.namespaces[0]` or of a List's `items[3]`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// The line (1-based) of every node of every document of a YAML text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    docs: Vec<HashMap<String, usize>>,
}

// === impl Lines ===

impl Lines {
    /// The lines of `text`. Text that stops being YAML keeps the lines read before the fault.
    pub fn of(text: &str) -> Self {
        Self::to_depth(text, usize::MAX)
    }

    /// The lines of the nodes of `text` at most `depth` collections deep (the root is at 0, a
    /// List's items at 2): what a large manifest needs without a path for every node.
    pub fn to_depth(text: &str, depth: usize) -> Self {
        let mut reader = Reader {
            depth,
            ..Reader::default()
        };
        // An error ends the reading; what was read is kept, and the parse that matters reports it.
        let _ = Parser::new_from_str(text).load(&mut reader, true);
        Self { docs: reader.docs }
    }

    /// The number of documents read.
    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    /// The line of the node at `path` in document `doc` (0-based) — `""` is the document's root,
    /// `a.b[2].c` a nested one — or of its nearest ancestor the text has.
    pub fn line(&self, doc: usize, path: &str) -> Option<usize> {
        let lines = self.docs.get(doc)?;
        let mut path = path;
        loop {
            if let Some(line) = lines.get(path) {
                return Some(*line);
            }
            if path.is_empty() {
                return None;
            }
            path = &path[..path.rfind(['.', '[']).unwrap_or(0)];
        }
    }
}

/// One open collection.
enum Frame {
    /// A mapping at `path`, with the key whose value comes next (`None`: a key comes next).
    Map { path: String, key: Option<String> },
    /// A sequence at `path`, with the index of its next item.
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Reader {
    docs: Vec<HashMap<String, usize>>,
    open: Vec<Frame>,
    /// Nodes deeper than this are not recorded.
    depth: usize,
}

impl Reader {
    /// The path of the node that starts now, or `None` for a mapping key (recorded as the path of
    /// the value it names: a key's line is where a reader looks for the field).
    fn next_path(&mut self, key: Option<&str>, line: usize) -> Option<String> {
        match self.open.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key: pending }) => match pending.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // Complex (non-scalar) keys are not addressed by any path.
                    let k = key.unwrap_or("?").to_owned();
                    let at = join(path, &k);
                    *pending = Some(k);
                    self.record(&at, line);
                    None
                }
            },
            Some(Frame::Seq { path, next }) => {
                let at = format!("{path}[{next}]");
                *next += 1;
                Some(at)
            }
        }
    }

    fn record(&mut self, path: &str, line: usize) {
        if self.open.len() > self.depth {
            return;
        }
        if let Some(doc) = self.docs.last_mut() {
            doc.entry(path.to_owned()).or_insert(line);
        }
    }
}

impl MarkedEventReceiver for Reader {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::DocumentStart => {
                self.docs.push(HashMap::new());
                self.open.clear();
            }
            Event::Scalar(value, ..) => {
                if let Some(path) = self.next_path(Some(&value), line) {
                    self.record(&path, line);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.next_path(None, line) {
                    self.record(&path, line);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                // A collection used as a key: give it a path of its own, never looked up.
                let path = self.next_path(None, line).unwrap_or_else(|| "?".to_owned());
                self.record(&path, line);
                self.open.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.open.pop();
            }
            _ => {}
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn names_the_line_of_each_node_by_path() {
        let text = "\
# a comment
apiVersion: v1
rules:
  - name: a
    match:
      namespaces: [x,
        y]
  - name: b
---
kind: List
items:
- kind: Service
  metadata: {name: one}
-
  kind: Service
";
        let lines = Lines::of(text);
        assert_eq!(lines.documents(), 2);
        let at = |doc, path| lines.line(doc, path);
        assert_eq!(at(0, ""), Some(2));
        assert_eq!(at(0, "apiVersion"), Some(2));
        assert_eq!(at(0, "rules"), Some(3));
        assert_eq!(at(0, "rules[0]"), Some(4));
        assert_eq!(at(0, "rules[0].name"), Some(4));
        assert_eq!(at(0, "rules[0].match.namespaces"), Some(6));
        assert_eq!(at(0, "rules[0].match.namespaces[1]"), Some(7));
        assert_eq!(at(0, "rules[1].name"), Some(8));
        // A path the text lacks: its nearest ancestor.
        assert_eq!(at(0, "rules[1].require.dualStack"), Some(8));
        assert_eq!(at(0, "nowhere"), Some(2));
        assert_eq!(at(1, ""), Some(10));
        assert_eq!(at(1, "items[0]"), Some(12));
        assert_eq!(at(1, "items[0].metadata.name"), Some(13));
        assert_eq!(at(1, "items[1]"), Some(15));
        assert_eq!(at(2, ""), None);

        let shallow = Lines::to_depth(text, 2);
        assert_eq!(shallow.line(1, "items[1]"), Some(15));
        assert_eq!(
            shallow.line(0, "rules[0].match"),
            Some(4),
            "deeper: its ancestor"
        );
    }

    #[test]
    fn keeps_the_lines_read_before_a_fault() {
        let lines = Lines::of("a: 1\nb: [\n");
        assert_eq!(lines.line(0, "a"), Some(1));
    }
}
