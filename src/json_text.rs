//! Writing JSON text by hand, byte for byte as serde_json writes it, for the hot path's answers;
//! and the scan that finds where a JSON string's plain run of bytes ends (shared with the reader).

/// The index of the first `"`, `\` or control character at or after `from` (or the end). Sixteen
/// bytes at a time with SSE2 on x86_64, then eight at a time with the bit tricks of serde_json's own
/// `skip_to_escape`; the chunks may run past the string (the body goes on after it), so only the
/// last bytes of the body are read one by one. Most strings of a review (keys, names, labels) end
/// within the first sixteen bytes: one load, three comparisons and a mask.
#[inline(always)]
pub fn plain_run(body: &[u8], from: usize) -> usize {
    run::<false>(body, from)
}

/// [`plain_run`] that also stops at the first byte outside ASCII: when it stops at a quote, the
/// bytes before it need no UTF-8 check (one more OR a chunk).
#[inline(always)]
pub fn ascii_run(body: &[u8], from: usize) -> usize {
    run::<true>(body, from)
}

#[inline(always)]
fn run<const STOP_OUTSIDE_ASCII: bool>(body: &[u8], mut from: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(chunk) = body.get(from..).and_then(<[u8]>::first_chunk::<16>) {
        use safe_arch::{
            bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i,
            move_mask_i8_m128i, set_splat_i8_m128i,
        };
        let v = load_unaligned_m128i(chunk);
        let eq = |byte: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(byte as i8));
        let control = cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i(0x1f)), v);
        let mut special = bitor_m128i(bitor_m128i(eq(b'"'), eq(b'\\')), control);
        if STOP_OUTSIDE_ASCII {
            // The mask takes each byte's high bit: set in every byte outside ASCII.
            special = bitor_m128i(special, v);
        }
        let stops = move_mask_i8_m128i(special);
        if stops != 0 {
            return from + stops.trailing_zeros() as usize;
        }
        from += 16;
    }
    run_words::<STOP_OUTSIDE_ASCII>(body, from)
}

/// [`plain_run`] or [`ascii_run`] eight bytes at a time (all of it where SSE2 is not there).
#[inline(always)]
fn run_words<const STOP_OUTSIDE_ASCII: bool>(body: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let stops = |byte: u8| {
        byte == b'"' || byte == b'\\' || byte < 0x20 || (STOP_OUTSIDE_ASCII && !byte.is_ascii())
    };
    let mut at = from;
    while let Some(chunk) = body.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([b'"'; 8]));
        // A borrow only runs on past a byte that is a hit itself: the first hit is exact, and the
        // first is all that is used.
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = x ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        let outside_ascii = if STOP_OUTSIDE_ASCII { x } else { 0 };
        let hits = (control | quote | backslash | outside_ascii) & HIGH;
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = body.get(at) {
        if stops(byte) {
            break;
        }
        at += 1;
    }
    at
}

/// A JSON string, escaped as serde_json escapes: `"`, `\` and the control characters (short forms
/// where JSON has them, `\u00xx` otherwise); everything else as is. Inlined into the encoders:
/// their strings are short, and a call each cost more than the copy (0.5 k instructions a review).
#[inline(always)]
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Runs that need no escape are found by `plain_run` and copied in one go.
    let mut at = 0;
    loop {
        let end = plain_run(bytes, at);
        out.extend_from_slice(&bytes[at..end]);
        let Some(&byte) = bytes.get(end) else {
            break;
        };
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        at = end + 1;
    }
    out.push(b'"');
}

/// A JSON array of strings.
pub fn string_list<'a>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'a str>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_as_serde_does() {
        for s in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é…✓",
        ] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn plain_run_stops_at_quotes_backslashes_and_control_characters() {
        for (text, want) in [
            ("", 0),
            ("abc", 3),
            ("abcdefghijklmnop\"", 16),
            ("abcdefghij\\", 10),
            ("abcdefghijklmnopqrstuvw\u{1}x", 23),
            ("\u{1f}", 0),
            ("é€ abc \u{7f}", 11),
        ] {
            assert_eq!(plain_run(text.as_bytes(), 0), want, "{text:?}");
            assert_eq!(run_words::<false>(text.as_bytes(), 0), want, "{text:?}");
        }
        assert_eq!(plain_run(b"ab\"cdefghij\"", 3), 11);
    }

    #[test]
    fn ascii_run_stops_outside_ascii_too() {
        for (text, want) in [
            ("", 0),
            ("abc\"", 3),
            ("abcdefghijklmnopqrst\u{7f}é", 21),
            ("abcdefghijklmnopqrstuvwxyz012345é\"", 32),
            ("é", 0),
            ("ab\u{1}é", 2),
        ] {
            assert_eq!(ascii_run(text.as_bytes(), 0), want, "{text:?}");
            assert_eq!(run_words::<true>(text.as_bytes(), 0), want, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn escapes_any_text_as_serde_does(s in any::<String>()) {
            let mut out = Vec::new();
            string(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }

        #[test]
        fn plain_run_finds_the_first_special_byte(
            // Mostly plain bytes, so that runs cross the 16- and 8-byte chunks.
            bytes in prop::collection::vec(prop_oneof![12 => 0x20u8..=0xff, 1 => any::<u8>()], 0..100),
            from in 0..100usize,
        ) {
            let from = from.min(bytes.len());
            let want = bytes[from..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .map_or(bytes.len(), |i| from + i);
            prop_assert_eq!(plain_run(&bytes, from), want);
            prop_assert_eq!(run_words::<false>(&bytes, from), want);
            let want = bytes[from..].iter()
                .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))
                .map_or(bytes.len(), |i| from + i);
            prop_assert_eq!(ascii_run(&bytes, from), want);
            prop_assert_eq!(run_words::<true>(&bytes, from), want);
        }
    }
}
