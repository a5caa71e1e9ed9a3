//! Skipping one JSON value without decoding it: where it ends, checked as strictly as serde_json
//! checks what it ignores (or more strictly). Objects and arrays are scanned 64 bytes at a time
//! with a structural index in the manner of simdjson (Langdale and Lemire, "Parsing gigabytes of
//! JSON per second", 2019): bit masks of the quotes, backslashes, structural characters and bytes
//! up to the space in the block give every string's extent without looking at its bytes one by
//! one, and only the tokens (`{ } [ ] : ,`, a string's opening quote, a scalar's first byte) are
//! then checked against the grammar. On x86_64 the masks come from SSE2 (`safe_arch`), elsewhere
//! from the same arithmetic on 64-bit words.

use crate::json_text::plain_run;

/// Containers nested deeper than this in a skipped value are left to the caller (serde_json).
const MAX_DEPTH: u32 = 127;

/// The index just past the value that starts at `at` (no whitespace before it), or `None` when the
/// bytes there do not start one valid JSON value or nest deeper than [`MAX_DEPTH`]. What follows
/// the value is the caller's to check.
pub(crate) fn value_end(body: &[u8], at: usize) -> Option<usize> {
    match *body.get(at)? {
        b'"' => string_end(body, at + 1),
        b'{' | b'[' => container_end(body, at),
        _ => scalar_end(body, at),
    }
}

/// For the fuzz target: where [`value_end`] disagrees with serde_json about `bytes` (a bug), how.
/// It must never find an end where serde_json refuses the bytes up to it, and must find the end of
/// every value serde_json accepts whole (from its first byte), unless it nests deeper than
/// [`MAX_DEPTH`].
#[doc(hidden)]
pub fn disagreement(bytes: &[u8]) -> Option<String> {
    let accepts = |bytes: &[u8]| serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    match value_end(bytes, 0) {
        Some(end) if !accepts(&bytes[..end]) => {
            Some(format!("skipped to {end}; serde_json refuses"))
        }
        Some(_) => None,
        None => {
            // Whole: what follows the value in the same block is checked too (strictly), which can
            // only refuse bytes that serde_json, reading on, would refuse as well.
            let deep =
                bytes.iter().filter(|b| matches!(b, b'[' | b'{')).count() >= MAX_DEPTH as usize;
            let starts_with_value = bytes.first().is_some_and(|b| !b.is_ascii_whitespace());
            (starts_with_value && !deep && accepts(bytes))
                .then(|| "serde_json accepts what the skipper refused".to_owned())
        }
    }
}

/// Past the closing quote of the string whose first byte (after the opening quote) is at `at`:
/// escapes checked, control characters refused (UTF-8 is not checked, as in serde_json's
/// `ignore_str`).
fn string_end(body: &[u8], mut at: usize) -> Option<usize> {
    loop {
        at = plain_run(body, at);
        match *body.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at = escape_end(body, at)?,
            _ => return None, // a control character
        }
    }
}

/// Past the escape whose backslash is at `at`: `\" \\ \/ \b \f \n \r \t` or `\u` and four hex
/// digits (any code point: serde_json does not pair surrogates in what it ignores).
fn escape_end(body: &[u8], at: usize) -> Option<usize> {
    match *body.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' => body
            .get(at + 2..at + 6)?
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(at + 6),
        _ => None,
    }
}

/// Past `true`, `false`, `null` or a number starting at `at`.
fn scalar_end(body: &[u8], at: usize) -> Option<usize> {
    let word = |word: &[u8]| (body.get(at..at + word.len())? == word).then_some(at + word.len());
    match *body.get(at)? {
        b't' => word(b"true"),
        b'f' => word(b"false"),
        b'n' => word(b"null"),
        b'-' => number_end(body, at + 1),
        b'0'..=b'9' => number_end(body, at),
        _ => None,
    }
}

/// Past the number whose first digit (after an optional `-`) is at `at`: `0` or `[1-9][0-9]*`,
/// then an optional fraction and exponent, each with at least one digit; `01` is refused, as serde
/// refuses the digit after a leading zero.
fn number_end(body: &[u8], at: usize) -> Option<usize> {
    let digits = |mut at: usize| {
        while matches!(body.get(at), Some(b'0'..=b'9')) {
            at += 1;
        }
        at
    };
    let at_least_one_digit = |at: usize| Some(digits(at)).filter(|&end| end > at);
    let mut at = match *body.get(at)? {
        b'0' => at + 1,
        b'1'..=b'9' => digits(at + 1),
        _ => return None,
    };
    if body.get(at) == Some(&b'.') {
        at = at_least_one_digit(at + 1)?;
    }
    if matches!(body.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(body.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        at = at_least_one_digit(at)?;
    }
    (!matches!(body.get(at), Some(b'0'..=b'9'))).then_some(at)
}

/// Past the object or array whose opening bracket is at `start`.
fn container_end(body: &[u8], start: usize) -> Option<usize> {
    let mut strings = Strings::default();
    let mut grammar = Grammar {
        open: 0,
        depth: 0,
        expect: Expect::Value,
    };
    let mut block_start = start;
    while block_start < body.len() {
        let (classes, in_body) = match body.get(block_start..block_start + 64) {
            Some(full) => (classify(full.try_into().ok()?), u64::MAX),
            None => {
                // The last, short block: padded with spaces, which are neither tokens nor strings
                // (and not looked at as blanks: they are not in the body).
                let mut padded = [b' '; 64];
                let tail = &body[block_start..];
                padded[..tail.len()].copy_from_slice(tail);
                (classify(&padded), (1 << tail.len()) - 1)
            }
        };
        // An escaped byte follows its backslash (never the first byte: that is the bracket).
        let (mut tokens, in_string) = strings.tokens(&classes, |escaped| {
            escape_end(body, (block_start + escaped).checked_sub(1)?)
        })?;
        blanks_allowed(body, block_start, classes.blank & in_body, in_string)?;
        while tokens != 0 {
            let at = block_start + tokens.trailing_zeros() as usize;
            tokens &= tokens - 1;
            if let Some(end) = grammar.token(body, at)? {
                return Some(end);
            }
        }
        block_start += 64;
    }
    None
}

/// The block's bytes up to 0x20 (`blank`; none in the compact JSON the API server sends, but for
/// spaces in some strings) are allowed: in a string (`in_string`) only the space, elsewhere only
/// whitespace.
fn blanks_allowed(body: &[u8], block_start: usize, mut blank: u64, in_string: u64) -> Option<()> {
    while blank != 0 {
        let i = blank.trailing_zeros();
        blank &= blank - 1;
        let byte = *body.get(block_start + i as usize)?;
        let whitespace_outside = in_string >> i & 1 == 0 && matches!(byte, b'\t' | b'\n' | b'\r');
        if byte != b' ' && !whitespace_outside {
            return None;
        }
    }
    Some(())
}

/// One bit per byte of a 64-byte block (bit `i` is byte `i`), for each class of byte that matters.
#[derive(Debug, Default, PartialEq, Eq)]
struct Classes {
    quote: u64,
    backslash: u64,
    /// `{ } [ ] : ,`
    structural: u64,
    /// 0x00 to 0x20: the space, tab, line feed and carriage return are whitespace outside strings,
    /// the space is the only one allowed inside one, the others are valid nowhere. One class for
    /// all of them (they are rare in compact JSON), told apart by the byte when one is there.
    blank: u64,
}

/// What carries from one block to the next: whether it ends inside a string, on an unfinished
/// escape, or inside a scalar.
#[derive(Default)]
struct Strings {
    in_string: u64,
    escaping: u64,
    in_scalar: u64,
}

impl Strings {
    /// The block's tokens (structural characters outside strings, opening quotes, first bytes of
    /// scalars) and the mask of the bytes inside strings (for the caller to check the blanks);
    /// `None` when `check_escape` (called with the index in the block of each escaped byte) refuses
    /// an escape.
    fn tokens(
        &mut self,
        classes: &Classes,
        mut check_escape: impl FnMut(usize) -> Option<usize>,
    ) -> Option<(u64, u64)> {
        let escaped = self.escaped(classes.backslash);
        // `\"` and `\\` need no further look (the usual escapes in an embedded JSON document).
        let mut escapes = escaped & !(classes.quote | classes.backslash);
        while escapes != 0 {
            check_escape(escapes.trailing_zeros() as usize)?;
            escapes &= escapes - 1;
        }
        let quote = classes.quote & !escaped;
        // From each opening quote up to (not including) its closing quote.
        let in_string = prefix_xor(quote) ^ self.in_string;
        self.in_string = 0u64.wrapping_sub(in_string >> 63);
        let scalar = !(in_string | quote | classes.structural | classes.blank);
        let scalar_start = scalar & !(scalar << 1 | self.in_scalar);
        self.in_scalar = scalar >> 63;
        let tokens = (classes.structural & !in_string) | (quote & in_string) | scalar_start;
        Some((tokens, in_string))
    }

    /// The bytes that follow an odd run of backslashes (simdjson's branchless `find_escaped`).
    fn escaped(&mut self, backslash: u64) -> u64 {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let backslash = backslash & !self.escaping;
        let follows_escape = backslash << 1 | self.escaping;
        let odd_starts = backslash & !EVEN & !follows_escape;
        let (even_starts, overflow) = odd_starts.overflowing_add(backslash);
        self.escaping = u64::from(overflow);
        (EVEN ^ (even_starts << 1)) & follows_escape
    }
}

/// Bit `i` is the parity of the bits `0..=i` of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// What the next token may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ValueOrClose,
    Key,
    KeyOrClose,
    Colon,
    CommaOrClose,
}

/// The open containers (a bit each, 1 for an object, innermost lowest) and what comes next.
struct Grammar {
    open: u128,
    depth: u32,
    expect: Expect,
}

impl Grammar {
    /// Takes the token at `at`; `Some(Some(end))` once the outermost container has closed.
    #[inline(always)]
    fn token(&mut self, body: &[u8], at: usize) -> Option<Option<usize>> {
        let byte = *body.get(at)?;
        let in_object = self.open & 1 == 1;
        self.expect = match byte {
            b'"' => match self.expect {
                Expect::Key | Expect::KeyOrClose => Expect::Colon,
                Expect::Value | Expect::ValueOrClose => Expect::CommaOrClose,
                _ => return None,
            },
            b':' if self.expect == Expect::Colon => Expect::Value,
            b',' if self.expect == Expect::CommaOrClose => {
                if in_object {
                    Expect::Key
                } else {
                    Expect::Value
                }
            }
            b'{' | b'[' if matches!(self.expect, Expect::Value | Expect::ValueOrClose) => {
                if self.depth == MAX_DEPTH {
                    return None;
                }
                self.depth += 1;
                let object = byte == b'{';
                self.open = self.open << 1 | u128::from(object);
                if object {
                    Expect::KeyOrClose
                } else {
                    Expect::ValueOrClose
                }
            }
            b'}' | b']' => {
                let closes_object = byte == b'}';
                let may_close = self.expect == Expect::CommaOrClose
                    || (closes_object && self.expect == Expect::KeyOrClose)
                    || (!closes_object && self.expect == Expect::ValueOrClose);
                if !may_close || in_object != closes_object {
                    return None;
                }
                self.open >>= 1;
                self.depth -= 1;
                if self.depth == 0 {
                    return Some(Some(at + 1));
                }
                Expect::CommaOrClose
            }
            _ if matches!(self.expect, Expect::Value | Expect::ValueOrClose) => {
                let end = scalar_end(body, at)?;
                // The scalar must end where a token or whitespace starts (`1x`, `truefalse`: no).
                if !matches!(
                    body.get(end),
                    Some(
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b','
                            | b':'
                            | b'{'
                            | b'}'
                            | b'['
                            | b']'
                            | b'"'
                    )
                ) {
                    return None;
                }
                Expect::CommaOrClose
            }
            _ => return None,
        };
        Some(None)
    }
}

/// SSE2, sixteen bytes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn classify(block: &[u8; 64]) -> Classes {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let mut classes = Classes::default();
    for (i, chunk) in block.as_chunks::<16>().0.iter().enumerate() {
        let v = load_unaligned_m128i(chunk);
        let splat = |byte: u8| set_splat_i8_m128i(byte as i8);
        let eq = |byte: u8| cmp_eq_mask_i8_m128i(v, splat(byte));
        let bits = |mask| u64::from(move_mask_i8_m128i(mask) as u16) << (16 * i);
        // `[` and `]` differ from `{` and `}` only in the 0x20 bit, which no other byte maps onto them.
        let folded = bitor_m128i(v, splat(0x20));
        let brackets = bitor_m128i(
            cmp_eq_mask_i8_m128i(folded, splat(b'{')),
            cmp_eq_mask_i8_m128i(folded, splat(b'}')),
        );
        classes.quote |= bits(eq(b'"'));
        classes.backslash |= bits(eq(b'\\'));
        classes.structural |= bits(bitor_m128i(brackets, bitor_m128i(eq(b':'), eq(b','))));
        classes.blank |= bits(cmp_eq_mask_i8_m128i(min_u8_m128i(v, splat(b' ')), v));
    }
    classes
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn classify(block: &[u8; 64]) -> Classes {
    classify_words(block)
}

/// The same masks from 64-bit words, eight bytes at a time (exact per byte: no borrow crosses bytes).
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
fn classify_words(block: &[u8; 64]) -> Classes {
    const ONES: u64 = u64::MAX / 255;
    const LOW7: u64 = ONES * 0x7f;
    // The high bit of each byte of `x` that is zero.
    let zero = |x: u64| !((x & LOW7).wrapping_add(LOW7) | x | LOW7);
    // The high bits of eight bytes, gathered into the low eight bits.
    let pack = |high: u64| (high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
    let mut classes = Classes::default();
    for (i, word) in block.as_chunks::<8>().0.iter().enumerate() {
        let x = u64::from_le_bytes(*word);
        let eq = |byte: u8| zero(x ^ (ONES * u64::from(byte)));
        let bits = |high: u64| pack(high) << (8 * i);
        let folded = x | (ONES * 0x20);
        let brackets =
            zero(folded ^ (ONES * u64::from(b'{'))) | zero(folded ^ (ONES * u64::from(b'}')));
        classes.quote |= bits(eq(b'"'));
        classes.backslash |= bits(eq(b'\\'));
        classes.structural |= bits(brackets | eq(b':') | eq(b','));
        // Up to 0x20: adding 0x5f to the low seven bits leaves the high bit clear.
        classes.blank |= bits(!((x & LOW7).wrapping_add(ONES * 0x5f) | x) & !LOW7);
    }
    classes
}

#[cfg(test)]
mod tests;
