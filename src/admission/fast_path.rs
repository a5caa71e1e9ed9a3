//! The fast path of decoding: one pass over the body that reads only the fields the policy uses and
//! skips everything else (managedFields, annotations, ports ...) without allocating, validating it
//! as it goes.
//!
//! Its contract is narrow, which keeps it safe: when it answers, the body is JSON that serde_json
//! would accept, and the answer equals what serde_json decodes (checked by a differential property
//! test and a fuzz target). Anything it is not sure about (an escape in a string it reads, a
//! duplicate field, `null` where serde would refuse it, a value of another type, very deep nesting)
//! makes it give up, and the body goes to serde_json, which decides and names the error.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::json_text::plain_run;
use crate::service::{Labels, Metadata, Service, ServiceSpec};

use super::{GroupVersionKind, RequestIn, ReviewIn, ServiceObject};

/// The AdmissionReview in `body`, or `None` to let serde_json decide.
///
/// `reads_labels`: whether the policy reads the Services' labels; if not, they are checked as
/// serde_json would check them but not kept (the Services come back without labels).
pub(super) fn decode(body: &[u8], reads_labels: bool) -> Option<ReviewIn<'_, ServiceObject>> {
    let mut reader = Reader {
        body,
        at: 0,
        reads_labels,
    };
    let review = reader.review()?;
    reader.whitespace();
    (reader.at == body.len()).then_some(review)
}

/// Where the fast path answers differently from serde_json (which is a bug), what differs; for the
/// fuzz target and the property tests. `None` when it agrees or gives up.
pub(super) fn disagreement(body: &[u8]) -> Option<String> {
    for reads_labels in [true, false] {
        let Some(fast) = decode(body, reads_labels) else {
            continue;
        };
        let mut slow = match serde_json::from_slice::<ReviewIn<'_, ServiceObject>>(body) {
            Ok(slow) => slow,
            Err(e) => return Some(format!("answered {fast:?}; serde_json refused: {e}")),
        };
        if !reads_labels && let Some(req) = &mut slow.request {
            for object in [&mut req.object, &mut req.old_object].into_iter().flatten() {
                object.0.metadata.labels.clear();
            }
        }
        if fast != slow {
            return Some(format!("answered {fast:?}\nserde_json: {slow:?}"));
        }
    }
    None
}

/// Nesting deeper than this in a skipped value is left to serde_json (the stack is one `u128`).
const MAX_SKIP_DEPTH: u32 = 127;

/// Which of a struct's fields were seen, to refuse duplicates as serde does.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, field: u32) -> Option<()> {
        let bit = 1 << field;
        let fresh = self.0 & bit == 0;
        self.0 |= bit;
        fresh.then_some(())
    }
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
    reads_labels: bool,
}

impl<'a> Reader<'a> {
    // === the envelope and the Service: the fields serde would decode, nothing else ===

    fn review(&mut self) -> Option<ReviewIn<'a, ServiceObject>> {
        let mut review = ReviewIn {
            api_version: "",
            kind: "",
            request: None,
        };
        let mut seen = Seen::default();
        self.object(|r, key| {
            match key {
                b"apiVersion" => {
                    seen.first(0)?;
                    review.api_version = r.str()?;
                }
                b"kind" => {
                    seen.first(1)?;
                    review.kind = r.str()?;
                }
                b"request" => {
                    seen.first(2)?;
                    review.request = r.nullable(Self::request)?;
                }
                _ => r.skip_value()?,
            }
            Some(())
        })?;
        Some(review)
    }

    fn request(&mut self) -> Option<RequestIn<'a, ServiceObject>> {
        let mut req = RequestIn {
            uid: Cow::Borrowed(""),
            kind: GroupVersionKind::default(),
            sub_resource: None,
            name: Cow::Borrowed(""),
            namespace: Cow::Borrowed(""),
            operation: Cow::Borrowed(""),
            object: None,
            old_object: None,
            dry_run: None,
        };
        let mut seen = Seen::default();
        self.object(|r, key| {
            let (field, value) = match key {
                b"uid" => (0, &mut req.uid),
                b"name" => (1, &mut req.name),
                b"namespace" => (2, &mut req.namespace),
                b"operation" => (3, &mut req.operation),
                b"kind" => {
                    seen.first(4)?;
                    req.kind = r.kind()?;
                    return Some(());
                }
                b"subResource" => {
                    seen.first(5)?;
                    req.sub_resource = r.nullable(|r| r.str().map(Cow::Borrowed))?;
                    return Some(());
                }
                b"object" => {
                    seen.first(6)?;
                    req.object = r.nullable(Self::service)?;
                    return Some(());
                }
                b"oldObject" => {
                    seen.first(7)?;
                    req.old_object = r.nullable(Self::service)?;
                    return Some(());
                }
                b"dryRun" => {
                    seen.first(8)?;
                    req.dry_run = r.nullable(Self::bool)?;
                    return Some(());
                }
                _ => return r.skip_value(),
            };
            seen.first(field)?;
            *value = Cow::Borrowed(r.str()?);
            Some(())
        })?;
        Some(req)
    }

    fn kind(&mut self) -> Option<GroupVersionKind<'a>> {
        let mut gvk = GroupVersionKind::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            let (field, value) = match key {
                b"group" => (0, &mut gvk.group),
                b"version" => (1, &mut gvk.version),
                b"kind" => (2, &mut gvk.kind),
                _ => return r.skip_value(),
            };
            seen.first(field)?;
            *value = Cow::Borrowed(r.str()?);
            Some(())
        })?;
        Some(gvk)
    }

    fn service(&mut self) -> Option<ServiceObject> {
        let mut service = Service::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            match key {
                b"metadata" => {
                    seen.first(0)?;
                    service.metadata = r.metadata()?;
                }
                b"spec" => {
                    seen.first(1)?;
                    service.spec = r.nullable(Self::spec)?;
                }
                _ => r.skip_value()?,
            }
            Some(())
        })?;
        Some(ServiceObject(service))
    }

    fn metadata(&mut self) -> Option<Metadata> {
        let mut metadata = Metadata::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            let (field, value) = match key {
                b"name" => (0, &mut metadata.name),
                b"generateName" => (1, &mut metadata.generate_name),
                b"namespace" => (2, &mut metadata.namespace),
                b"labels" => {
                    seen.first(3)?;
                    // Not kept when the policy does not read them, but checked as serde reads them.
                    metadata.labels = r.labels(r.reads_labels)?;
                    return Some(());
                }
                _ => return r.skip_value(),
            };
            seen.first(field)?;
            *value = r.str()?.to_owned();
            Some(())
        })?;
        Some(metadata)
    }

    fn spec(&mut self) -> Option<ServiceSpec> {
        let mut spec = ServiceSpec::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            let (field, value) = match key {
                b"type" => (0, &mut spec.type_),
                b"clusterIP" => (1, &mut spec.cluster_ip),
                b"ipFamilyPolicy" => (2, &mut spec.ip_family_policy),
                b"clusterIPs" => {
                    seen.first(3)?;
                    spec.cluster_ips = r.nullable(Self::strings)?;
                    return Some(());
                }
                b"ipFamilies" => {
                    seen.first(4)?;
                    spec.ip_families = r.nullable(Self::strings)?;
                    return Some(());
                }
                b"selector" => {
                    seen.first(5)?;
                    spec.selector = r.nullable(|r| r.labels(true))?;
                    return Some(());
                }
                _ => return r.skip_value(),
            };
            seen.first(field)?;
            *value = r.nullable(|r| r.str().map(str::to_owned))?;
            Some(())
        })?;
        Some(spec)
    }

    /// A map of strings; empty unless `keep`.
    fn labels(&mut self, keep: bool) -> Option<Labels> {
        let mut labels = BTreeMap::new();
        self.object(|r, key| {
            let value = r.plain_str()?;
            if keep {
                // A repeated key: the last value wins, as in serde's map.
                let key = std::str::from_utf8(key).ok()?;
                labels.insert(key.to_owned(), std::str::from_utf8(value).ok()?.to_owned());
            } else if !value.is_ascii() {
                std::str::from_utf8(value).ok()?;
            }
            Some(())
        })?;
        Some(labels)
    }

    fn strings(&mut self) -> Option<Vec<String>> {
        self.whitespace();
        self.eat(b'[')?;
        let mut out = Vec::new();
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(out);
        }
        loop {
            self.whitespace();
            out.push(self.str()?.to_owned());
            self.whitespace();
            match self.next()? {
                b',' => {}
                b']' => return Some(out),
                _ => return None,
            }
        }
    }

    fn bool(&mut self) -> Option<bool> {
        self.whitespace();
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// `null` as `None`, anything else read by `read`.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        self.whitespace();
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        read(self).map(Some)
    }

    /// A JSON object whose members `member` reads (it must read or skip the value). Keys come as
    /// bytes, UTF-8 checked (serde reads every key of a struct or map).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.whitespace();
        self.eat(b'{')?;
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            let key = self.plain_str()?;
            if !key.is_ascii() {
                std::str::from_utf8(key).ok()?;
            }
            self.whitespace();
            self.eat(b':')?;
            self.whitespace();
            member(self, key)?;
            self.whitespace();
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string without escapes, borrowed from the body; UTF-8 checked as serde does for what it reads.
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.plain_str()?).ok()
    }

    /// The bytes of a string without escapes (serde would unescape into an owned string) or control
    /// characters.
    fn plain_str(&mut self) -> Option<&'a [u8]> {
        self.whitespace();
        self.eat(b'"')?;
        let start = self.at;
        let end = plain_run(self.body, start);
        if self.body.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        self.body.get(start..end)
    }

    // === skipping: the JSON grammar, as strict as serde_json's `ignore_value` or stricter ===

    /// Skips one value of any shape. Iterative: the open containers are bits of a `u128` (1 = object).
    fn skip_value(&mut self) -> Option<()> {
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value starts here.
            self.whitespace();
            match self.next()? {
                b'"' => self.skip_string_body()?,
                open @ (b'{' | b'[') => {
                    self.whitespace();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.at += 1;
                    } else {
                        if depth == MAX_SKIP_DEPTH {
                            return None;
                        }
                        stack = stack << 1 | u128::from(open == b'{');
                        depth += 1;
                        if open == b'{' {
                            self.skip_key_and_colon()?;
                        }
                        continue;
                    }
                }
                // The rest of the word: stepping back to match it whole cost this hot loop ~2 k
                // instructions a review (the dispatch no longer compiles to a jump table).
                b't' => self.rest_of_literal(b"rue")?,
                b'f' => self.rest_of_literal(b"alse")?,
                b'n' => self.rest_of_literal(b"ull")?,
                b'-' => self.skip_number_digits()?,
                b'0'..=b'9' => {
                    self.at -= 1;
                    self.skip_number_digits()?;
                }
                _ => return None,
            }
            // A value ended: close containers until one continues with a comma.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.whitespace();
                let in_object = stack & 1 == 1;
                match self.next()? {
                    b',' => {
                        if in_object {
                            self.skip_key_and_colon()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    fn skip_key_and_colon(&mut self) -> Option<()> {
        self.whitespace();
        self.eat(b'"')?;
        self.skip_string_body()?;
        self.whitespace();
        self.eat(b':')
    }

    /// After the opening quote: up to and past the closing one, checking escapes and refusing control
    /// characters (UTF-8 is not checked in skipped strings, as in serde_json).
    #[inline(always)]
    fn skip_string_body(&mut self) -> Option<()> {
        loop {
            self.at = plain_run(self.body, self.at);
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.body.get(self.at..self.at + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                _ => return None, // a control character
            }
        }
    }

    /// A number from its first digit (after an optional `-`): `0` or `[1-9][0-9]*`, then an optional
    /// fraction and exponent, each with at least one digit.
    fn skip_number_digits(&mut self) -> Option<()> {
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.at_least_one_digit()?;
        }
        // `01` is not a number: serde refuses the digit that follows a leading zero.
        (!matches!(self.peek(), Some(b'0'..=b'9'))).then_some(())
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    // === bytes ===

    #[inline(always)]
    fn whitespace(&mut self) {
        // Compact JSON (what the API server sends) has none: one comparison in the common case.
        while let Some(&byte) = self.body.get(self.at)
            && byte <= b' '
        {
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                return;
            }
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn literal(&mut self, literal: &[u8]) -> Option<()> {
        self.whitespace();
        self.rest_of_literal(literal)
    }

    /// `rest` at the current position, consumed.
    fn rest_of_literal(&mut self, rest: &[u8]) -> Option<()> {
        let found = self.body.get(self.at..self.at + rest.len())?;
        self.at += rest.len();
        (found == rest).then_some(())
    }
}

#[cfg(test)]
mod tests;
