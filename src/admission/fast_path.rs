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

use crate::domain::service::{Labels, Metadata, Selector, Service, ServiceSpec};
use crate::json_skip;
use crate::json_text::{ascii_run, plain_run};

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
                    spec.selector = r.selector()?;
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
        self.string_map(|key, value| {
            if keep {
                // A repeated key: the last value wins, as in serde's map.
                let key = std::str::from_utf8(key).ok()?;
                labels.insert(key.to_owned(), std::str::from_utf8(value).ok()?.to_owned());
            }
            Some(())
        })?;
        Some(labels)
    }

    /// `spec.selector`: a map of strings or null, checked as serde reads one; what is kept is
    /// whether it has a member ([`Selector`]).
    fn selector(&mut self) -> Option<Selector> {
        let mut members = 0;
        self.nullable(|r| {
            r.string_map(|_, _| {
                members += 1;
                Some(())
            })
        })?;
        Some(Selector::of(members))
    }

    /// A map of strings, every key and value checked as serde checks them (UTF-8 included), each
    /// member handed to `member`.
    fn string_map(
        &mut self,
        mut member: impl FnMut(&'a [u8], &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.object(|r, key| member(key, r.string_bytes()?))
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
            // Every reader (and `skip_value`) skips the whitespace before its value itself.
            let key = self.string_bytes()?;
            self.whitespace();
            self.eat(b':')?;
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
        std::str::from_utf8(self.string_bytes()?).ok()
    }

    /// The bytes of a string without escapes (serde would unescape into an owned string) or control
    /// characters, checked as UTF-8 as serde checks every string it reads. ASCII, what a review's
    /// keys, names and labels are, is known to be UTF-8 from the scan that finds the string's end.
    /// Inlined: called for every key, it cost 2.3 k instructions a review more as a function.
    #[inline(always)]
    fn string_bytes(&mut self) -> Option<&'a [u8]> {
        self.whitespace();
        self.eat(b'"')?;
        let start = self.at;
        let mut end = ascii_run(self.body, start);
        if self.body.get(end) != Some(&b'"') {
            // A byte outside ASCII (or an escape, a control character, the end: refused below).
            end = plain_run(self.body, end);
            if self.body.get(end) != Some(&b'"') {
                return None;
            }
            std::str::from_utf8(self.body.get(start..end)?).ok()?;
        }
        self.at = end + 1;
        self.body.get(start..end)
    }

    // === skipping: the JSON grammar, as strict as serde_json's `ignore_value` or stricter ===

    /// Skips one value of any shape ([`json_skip::value_end`]).
    fn skip_value(&mut self) -> Option<()> {
        self.whitespace();
        self.at = json_skip::value_end(self.body, self.at)?;
        Some(())
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
        let found = self.body.get(self.at..self.at + literal.len())?;
        self.at += literal.len();
        (found == literal).then_some(())
    }
}

#[cfg(test)]
mod tests;
