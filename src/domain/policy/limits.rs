//! How large and how deeply nested the YAML this crate reads may be (the policy file, and the
//! manifests `check` reads), and the nesting check that runs before the YAML parser sees the text.
//!
//! Why a check before parsing: serde_yaml_ng hands the whole document to libyaml (unsafe-libyaml
//! 0.2.11) and collects every event before it deserializes anything, and only its deserializer
//! has a depth limit (128). libyaml's scanner walks its stack of possible simple keys, one entry
//! per open flow collection, for every token it fetches, so a parse costs tokens × flow depth.
//! Measured (release build, `Policy::from_yaml` before this check, one core of a 2-core VM):
//!
//! | document (n levels)                          | n = 10 k | 50 k   | 100 k  |
//! |----------------------------------------------|----------|--------|--------|
//! | `rules: [[[…]]]` (200 KB at 100 k)            | 0.29 s   | 7.3 s  | 29.8 s |
//! | `{a: {a: …}}`                                | 0.60 s   | 14.5 s | 66.3 s |
//! | `[[[…]]]` at the top                         | 0.06 s   | 0.17 s | 0.38 s |
//! | `- - - … x` (block)                          | 0.003 s  | 0.01 s | 0.04 s |
//!
//! Debug builds are ~5× slower. The time is all in libyaml's scanner
//! (`yaml_parser_fetch_more_tokens`, 89 % of samples under `perf`), before the deserializer
//! refuses the document at its first level. Block nesting costs nothing extra (its stack is only
//! walked when it shrinks), but is counted too so that the limit means what it says.
//!
//! [`check_depth`] makes one linear pass that follows libyaml's scanner rules for where tokens
//! start and end (comments, quoted, plain and block scalars, tags, anchors, indentation), so that
//! it sees exactly the collections libyaml opens, and stops at the first one past the limit: a
//! 100 k-level document is refused in microseconds. Getting a scalar's extent wrong could hide
//! brackets from it, so each rule below names the libyaml function it mirrors; after anything
//! libyaml refuses (where it stops parsing) the pass may count more than libyaml would, never less.
//! A property test (`policy/tests.rs`) checks that the count equals the nesting serde_yaml_ng
//! builds, for random documents made of YAML's indicators, quotes, breaks and indentation.

/// Largest policy file read, in bytes. A policy is a few KiB; one mounted from a ConfigMap cannot
/// exceed 1 MiB (the API server's limit on a ConfigMap), so this refuses nothing deployable. Reading
/// stops one byte past it, so `--policy /dev/zero` is refused after 1 MiB, not at ~1 GB.
pub const POLICY_MAX_BYTES: u64 = 1024 * 1024;

/// Deepest nesting of a policy. The schema nests 8 levels (`rules[].match.namespaceSelector
/// .matchExpressions[].values[]`); 64 leaves room for any future field. With the depth bounded the
/// parse is linear in size: the worst 1 MiB policy (`[[…]], ` 64 deep, all brackets) takes 0.18 s
/// to refuse (release build; this check 10 ms of it).
pub const POLICY_MAX_DEPTH: usize = 64;

/// Largest manifest file `check` reads, in bytes. One Kubernetes object is at most ~1.5 MiB
/// (etcd's request limit), and a file may hold a `List` of many; 16 MiB keeps a whole
/// repository's Services in one file possible while bounding memory per file.
pub const MANIFEST_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Deepest nesting of a manifest `check` reads: the limit serde_yaml_ng's deserializer already
/// applies (`recursion limit exceeded` past 128), so this refuses nothing `check` could read
/// before, only refuses it before libyaml's quadratic scan instead of after. CRD schemas, the
/// deepest manifests in practice, nest a few dozen levels. Bounded depth makes the cost linear in
/// size, and 128 costs no more than 64: the worst 16 MiB file (all brackets) parses in 4.7 s at
/// either depth, 16 MiB of ordinary Services in 0.8 s, this check 0.1 s of either.
pub const MANIFEST_MAX_DEPTH: usize = 128;

/// A document nests deeper than the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("nested deeper than {limit} levels at line {line}")]
pub struct TooDeep {
    /// The limit.
    pub limit: usize,
    /// The line (1-based) where a collection opened past the limit.
    pub line: usize,
}

/// Refuses `text` if any of its documents nests more than `limit` collections (block and flow
/// sequences and mappings) deep. One pass, linear in the text, memory bounded by `limit`.
pub fn check_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    Scanner::new(text, limit).run().map(|_| ())
}

/// The deepest nesting in `text`, as [`check_depth`] counts it.
#[cfg(test)]
pub(crate) fn max_depth(text: &str) -> usize {
    Scanner::new(text, usize::MAX).run().unwrap_or(usize::MAX)
}

/// An open block collection: an entry of libyaml's `indents` stack.
struct Block {
    /// Its indentation column.
    col: usize,
    /// A sequence (`- `), or a mapping.
    seq: bool,
    /// Whether an indentless sequence (`key:`, then `- item` at the key's own column) is open as
    /// its value: libyaml's parser opens one without an indentation level, but it is a level.
    indentless: bool,
}

/// An open flow collection: an entry of libyaml's `simple_keys` stack (one per flow level).
struct Flow {
    /// A sequence (`[`), or a mapping (`{`).
    seq: bool,
    /// The possible key of the current entry.
    key: Option<Key>,
    /// Whether the current entry is a `key: value` pair, which libyaml's parser reads as a
    /// one-pair mapping when the collection is a sequence: a level.
    pair: bool,
    /// The deepest nesting reached inside it.
    max: usize,
}

/// A token that may be a key: a `:` after it on the same line makes it one, and then libyaml
/// opens the mapping (block, or a flow sequence's pair) before it, around what it holds.
#[derive(Clone, Copy)]
struct Key {
    line: usize,
    col: usize,
    /// The deepest nesting reached from its start.
    max: usize,
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
    /// 0-based, like libyaml's marks.
    line: usize,
    /// In characters, like libyaml's marks: indentation is compared in these.
    col: usize,
    blocks: Vec<Block>,
    /// `blocks.len()` plus the open indentless sequences.
    block_depth: usize,
    flows: Vec<Flow>,
    /// Open pairs of flow sequences.
    pairs: usize,
    /// The possible key of the block context (flow level 0).
    block_key: Option<Key>,
    /// libyaml's `simple_key_allowed`: whether a token here may be a key.
    simple_key_allowed: bool,
    limit: usize,
    max: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, limit: usize) -> Self {
        Self {
            s: text.as_bytes(),
            pos: 0,
            line: 0,
            col: 0,
            blocks: Vec::new(),
            block_depth: 0,
            flows: Vec::new(),
            pairs: 0,
            block_key: None,
            simple_key_allowed: true,
            limit,
            max: 0,
        }
    }

    /// `yaml_parser_fetch_next_token`, for every token until the end.
    fn run(mut self) -> Result<usize, TooDeep> {
        loop {
            self.skip_to_next_token();
            if !self.in_flow() {
                self.unroll(self.col as isize);
            }
            let Some(c) = self.byte(0) else {
                return Ok(self.max);
            };
            if !self.in_flow() {
                self.end_indentless(c == b'-' && self.blankz(1));
            }
            let at_line_start = self.col == 0;
            if at_line_start && c == b'%' {
                // A directive runs to the end of its line (anything else after it is an error).
                self.unroll(-1);
                self.remove_key();
                self.simple_key_allowed = false;
                while !self.breakz(0) {
                    self.advance();
                }
            } else if at_line_start && self.document_marker() {
                self.unroll(-1);
                self.remove_key();
                self.simple_key_allowed = false;
                (0..3).for_each(|_| self.advance());
            } else {
                self.token(c)?;
            }
        }
    }

    /// One token starting with `c` (not a directive or document marker).
    fn token(&mut self, c: u8) -> Result<(), TooDeep> {
        let next_blankz = self.blankz(1);
        match c {
            b'[' | b'{' => {
                self.save_key();
                self.flows.push(Flow {
                    seq: c == b'[',
                    key: None,
                    pair: false,
                    max: 0,
                });
                self.reach(self.depth())?;
                self.simple_key_allowed = true;
                self.advance();
            }
            b']' | b'}' => {
                self.remove_key();
                if let Some(closed) = self.flows.pop() {
                    self.pairs -= usize::from(closed.pair);
                    // What it held counts for the collection around it, and for the key it may
                    // be (`[a, b]: value`).
                    if let Some(around) = self.flows.last_mut() {
                        around.max = around.max.max(closed.max);
                    }
                    if let Some(key) = self.key() {
                        key.max = key.max.max(closed.max);
                    }
                }
                self.simple_key_allowed = false;
                self.advance();
            }
            b',' => {
                self.remove_key();
                self.end_pair();
                self.simple_key_allowed = true;
                self.advance();
            }
            b'-' if next_blankz => {
                if !self.in_flow() {
                    self.block_entry()?;
                }
                self.remove_key();
                self.simple_key_allowed = true;
                self.advance();
            }
            b'?' if self.in_flow() || next_blankz => {
                // yaml_parser_fetch_key: an explicit key opens a block mapping at its column,
                // or a pair in a flow sequence.
                self.remove_key();
                if self.in_flow() {
                    self.start_pair(self.depth())?;
                } else {
                    self.roll(self.col, false, self.depth())?;
                }
                self.simple_key_allowed = !self.in_flow();
                self.advance();
            }
            b':' if self.in_flow() || next_blankz => {
                // yaml_parser_fetch_value: a key on this line opens a mapping (or pair) around
                // itself; in the block context without one, the `:` opens it (a complex value).
                let key = self.key().take().filter(|k| k.line == self.line);
                match key {
                    Some(key) if self.in_flow() => self.start_pair(key.max)?,
                    Some(key) => self.roll(key.col, false, key.max)?,
                    None if self.in_flow() => {}
                    None => self.roll(self.col, false, self.depth())?,
                }
                self.simple_key_allowed = !self.in_flow() && key.is_none();
                self.advance();
            }
            b'*' | b'&' => {
                self.save_key();
                self.simple_key_allowed = false;
                self.advance();
                while self
                    .byte(0)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    self.advance();
                }
            }
            b'!' => {
                self.save_key();
                self.simple_key_allowed = false;
                self.tag();
            }
            b'|' | b'>' if !self.in_flow() => {
                self.remove_key();
                self.simple_key_allowed = true;
                self.block_scalar();
            }
            b'\'' | b'"' => {
                self.save_key();
                self.simple_key_allowed = false;
                self.quoted(c == b'\'');
            }
            _ if self.starts_plain(c) => {
                self.save_key();
                self.simple_key_allowed = false;
                self.plain();
            }
            // libyaml stops here ("found character that cannot start any token"): anything
            // counted from here on is more than it would see, never less.
            _ => self.advance(),
        }
        Ok(())
    }

    /// `yaml_parser_scan_to_next_token`: spaces, comments and line breaks.
    fn skip_to_next_token(&mut self) {
        loop {
            // A byte-order mark is skipped as a character, even the first one: serde_yaml_ng
            // names the encoding, so libyaml's reader does not strip it.
            if self.col == 0 && self.s[self.pos..].starts_with(BOM) {
                self.advance();
            }
            // A tab is whitespace except where it could be indentation (libyaml then refuses it).
            while self.byte(0) == Some(b' ')
                || ((self.in_flow() || !self.simple_key_allowed) && self.byte(0) == Some(b'\t'))
            {
                self.advance();
            }
            // A `#` at a token's start is a comment, with or without a blank before it.
            if self.byte(0) == Some(b'#') {
                while !self.breakz(0) {
                    self.advance();
                }
            }
            if self.line_break(0) == 0 {
                return;
            }
            self.advance_line();
            if !self.in_flow() {
                self.simple_key_allowed = true;
            }
        }
    }

    /// How many collections are open.
    fn depth(&self) -> usize {
        self.block_depth + self.flows.len() + self.pairs
    }

    /// Records that a collection opened at `depth`; refuses it past the limit.
    fn reach(&mut self, depth: usize) -> Result<(), TooDeep> {
        if depth > self.limit {
            return Err(TooDeep {
                limit: self.limit,
                line: self.line + 1,
            });
        }
        self.max = self.max.max(depth);
        if let Some(flow) = self.flows.last_mut() {
            flow.max = flow.max.max(depth);
        }
        Ok(())
    }

    fn in_flow(&self) -> bool {
        !self.flows.is_empty()
    }

    // === keys and pairs ===

    /// The possible key of the current level (libyaml's top of `simple_keys`).
    fn key(&mut self) -> &mut Option<Key> {
        match self.flows.last_mut() {
            Some(flow) => &mut flow.key,
            None => &mut self.block_key,
        }
    }

    /// `yaml_parser_save_simple_key`.
    fn save_key(&mut self) {
        if self.simple_key_allowed {
            let key = Key {
                line: self.line,
                col: self.col,
                max: self.depth(),
            };
            *self.key() = Some(key);
        }
    }

    /// `yaml_parser_remove_simple_key`.
    fn remove_key(&mut self) {
        *self.key() = None;
    }

    /// A `key:` (or `?`) in a flow sequence: a one-pair mapping around what the key held.
    fn start_pair(&mut self, held: usize) -> Result<(), TooDeep> {
        if let Some(flow) = self.flows.last_mut()
            && flow.seq
            && !flow.pair
        {
            flow.pair = true;
            self.pairs += 1;
            self.reach(held + 1)?;
        }
        Ok(())
    }

    /// A `,`: the entry, and a pair it was, ends.
    fn end_pair(&mut self) {
        if let Some(flow) = self.flows.last_mut()
            && flow.pair
        {
            flow.pair = false;
            self.pairs -= 1;
        }
    }

    // === block structure ===

    /// libyaml's `indent`: the column of the innermost block collection, -1 at the top.
    fn indent(&self) -> isize {
        self.blocks.last().map_or(-1, |b| b.col as isize)
    }

    /// `yaml_parser_roll_indent`: a block collection opens at `col` if that is deeper, around
    /// what was already scanned of it (`held`: the depth its key reached).
    fn roll(&mut self, col: usize, seq: bool, held: usize) -> Result<(), TooDeep> {
        if self.indent() < col as isize {
            self.blocks.push(Block {
                col,
                seq,
                indentless: false,
            });
            self.block_depth += 1;
            self.reach(held + 1)?;
        }
        Ok(())
    }

    /// `yaml_parser_unroll_indent`: block collections deeper than `col` close.
    fn unroll(&mut self, col: isize) {
        while self.indent() > col {
            if let Some(b) = self.blocks.pop() {
                self.block_depth -= 1 + usize::from(b.indentless);
            }
        }
    }

    /// A `- ` in the block context: a sequence opens at its column, or, at the column of a
    /// mapping, an indentless sequence opens as that mapping's value.
    fn block_entry(&mut self) -> Result<(), TooDeep> {
        match self.blocks.last_mut() {
            Some(top) if top.col == self.col && !top.seq => {
                if !top.indentless {
                    top.indentless = true;
                    self.block_depth += 1;
                    self.reach(self.depth())?;
                }
                Ok(())
            }
            _ => self.roll(self.col, true, self.depth()),
        }
    }

    /// Any token but `- ` at a mapping's column ends the indentless sequence open there.
    fn end_indentless(&mut self, block_entry: bool) {
        if let Some(top) = self.blocks.last_mut()
            && top.col == self.col
            && top.indentless
            && !block_entry
        {
            top.indentless = false;
            self.block_depth -= 1;
        }
    }

    // === scalars and properties ===

    /// Whether `c` starts a plain scalar (the last test of `yaml_parser_fetch_next_token`).
    fn starts_plain(&self, c: u8) -> bool {
        let indicator = b"-?:,[]{}#&*!|>'\"%@`".contains(&c);
        !(self.blankz(0) || indicator)
            || (c == b'-' && !self.blank(1))
            || (!self.in_flow() && (c == b'?' || c == b':') && !self.blankz(1))
    }

    /// `yaml_parser_scan_plain_scalar`. In the block context it continues on the next lines
    /// indented deeper than the enclosing collection: brackets there are text.
    fn plain(&mut self) {
        let indent = self.indent() + 1;
        let mut leading_blanks = false;
        loop {
            if (self.col == 0 && self.document_marker()) || self.byte(0) == Some(b'#') {
                break;
            }
            while !self.blankz(0) {
                let c = self.s[self.pos];
                // `: ` ends it; in a flow, so do `,[]{}` and a `:` before one of `,?[]{}`.
                let ends_flow_key = |n: u8| b",?[]{}".contains(&n);
                if (c == b':'
                    && (self.blankz(1)
                        || (self.in_flow() && self.byte(1).is_some_and(ends_flow_key))))
                    || (self.in_flow() && b",[]{}".contains(&c))
                {
                    break;
                }
                self.advance();
            }
            if !(self.blank(0) || self.line_break(0) > 0) {
                break;
            }
            while self.blank(0) || self.line_break(0) > 0 {
                if self.blank(0) {
                    self.advance();
                } else {
                    self.advance_line();
                    leading_blanks = true;
                }
            }
            if !self.in_flow() && (self.col as isize) < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
    }

    /// `yaml_parser_scan_flow_scalar`: to the closing quote, across lines.
    fn quoted(&mut self, single: bool) {
        self.advance();
        while let Some(c) = self.byte(0) {
            if single && c == b'\'' {
                self.advance();
                if self.byte(0) != Some(b'\'') {
                    return;
                }
                self.advance();
            } else if !single && c == b'"' {
                self.advance();
                return;
            } else if !single && c == b'\\' {
                // An escape: the next character (or line break) is not the closing quote.
                self.advance();
                self.advance_any();
            } else {
                self.advance_any();
            }
        }
    }

    /// `yaml_parser_scan_tag`: `!<uri>`, or a tag that runs to a blank (or a `,` in a flow).
    fn tag(&mut self) {
        self.advance();
        if self.byte(0) == Some(b'<') {
            while !self.blankz(0) && self.byte(0) != Some(b'>') {
                self.advance();
            }
            if self.byte(0) == Some(b'>') {
                self.advance();
            }
            return;
        }
        while !(self.blankz(0) || (self.in_flow() && self.byte(0) == Some(b','))) {
            self.advance();
        }
    }

    /// `yaml_parser_scan_block_scalar`: the header, then every line indented at least as deep as
    /// the content (given by an indentation indicator, or by the first non-empty line, and always
    /// deeper than the enclosing collection).
    fn block_scalar(&mut self) {
        self.advance();
        let mut increment = 0;
        for _ in 0..2 {
            match self.byte(0) {
                Some(b'+' | b'-') => self.advance(),
                Some(d @ b'1'..=b'9') if increment == 0 => {
                    increment = isize::from(d - b'0');
                    self.advance();
                }
                _ => break,
            }
        }
        while self.blank(0) {
            self.advance();
        }
        if self.byte(0) == Some(b'#') {
            while !self.breakz(0) {
                self.advance();
            }
        }
        if self.line_break(0) == 0 {
            // libyaml refuses anything else after the header (or this is the end).
            return;
        }
        self.advance_line();
        let mut indent = match increment {
            0 => 0,
            n if self.indent() >= 0 => self.indent() + n,
            n => n,
        };
        if !self.block_scalar_breaks(&mut indent) {
            return;
        }
        while self.col as isize == indent && self.byte(0).is_some() {
            while !self.breakz(0) {
                self.advance();
            }
            if self.line_break(0) > 0 {
                self.advance_line();
            }
            if !self.block_scalar_breaks(&mut indent) {
                return;
            }
        }
    }

    /// `yaml_parser_scan_block_scalar_breaks`: eats indentation and empty lines; fixes the
    /// content's indentation (`*indent == 0`: not known yet). False where libyaml refuses a tab.
    fn block_scalar_breaks(&mut self, indent: &mut isize) -> bool {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || (self.col as isize) < *indent) && self.byte(0) == Some(b' ') {
                self.advance();
            }
            max_indent = max_indent.max(self.col as isize);
            if (*indent == 0 || (self.col as isize) < *indent) && self.byte(0) == Some(b'\t') {
                return false;
            }
            if self.line_break(0) == 0 {
                break;
            }
            self.advance_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent() + 1).max(1);
        }
        true
    }

    // === characters ===

    /// The byte `k` ahead; `None` at the end (or at a NUL, where libyaml's input ends too).
    fn byte(&self, k: usize) -> Option<u8> {
        self.s.get(self.pos + k).copied().filter(|&b| b != 0)
    }

    fn blank(&self, k: usize) -> bool {
        matches!(self.byte(k), Some(b' ' | b'\t'))
    }

    /// Length of the line break `k` bytes ahead (0: none). libyaml breaks lines at CR, LF, CRLF,
    /// NEL, LS and PS: a comment or scalar ends there, so they must end here too.
    fn line_break(&self, k: usize) -> usize {
        let rest = self.s.get(self.pos + k..).unwrap_or_default();
        match rest {
            [b'\r', b'\n', ..] => 2,
            [b'\r' | b'\n', ..] => 1,
            [0xC2, 0x85, ..] => 2,
            [0xE2, 0x80, 0xA8 | 0xA9, ..] => 3,
            _ => 0,
        }
    }

    fn breakz(&self, k: usize) -> bool {
        self.byte(k).is_none() || self.line_break(k) > 0
    }

    fn blankz(&self, k: usize) -> bool {
        self.blank(k) || self.breakz(k)
    }

    /// `---` or `...` at the start of a line, followed by a blank or the end.
    fn document_marker(&self) -> bool {
        let rest = &self.s[self.pos..];
        (rest.starts_with(b"---") || rest.starts_with(b"...")) && self.blankz(3)
    }

    /// Steps over one character (not a line break).
    fn advance(&mut self) {
        if let Some(b) = self.byte(0) {
            self.pos += utf8_width(b);
            self.col += 1;
        }
    }

    /// Steps over one line break.
    fn advance_line(&mut self) {
        self.pos += self.line_break(0);
        self.line += 1;
        self.col = 0;
    }

    /// Steps over one character or line break.
    fn advance_any(&mut self) {
        if self.line_break(0) > 0 {
            self.advance_line();
        } else {
            self.advance();
        }
    }
}

const BOM: &[u8] = "\u{feff}".as_bytes();

/// Bytes in the UTF-8 sequence that `lead` starts (`text` is a `str`: always whole sequences).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}
