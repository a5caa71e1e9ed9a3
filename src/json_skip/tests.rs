//! The skipper agrees with serde_json: where it finds a value's end, serde_json accepts the bytes up
//! to there; every value serde_json accepts is skipped to its end, compact or pretty, wherever the
//! 64-byte blocks fall.

use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::*;

/// serde_json's verdict on `bytes` as one value.
fn serde_accepts(bytes: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(bytes).is_ok()
}

/// One byte at a time: what each mask must say.
fn classes_by_byte(block: &[u8; 64]) -> Classes {
    let mut classes = Classes::default();
    for (i, &byte) in block.iter().enumerate() {
        let bit = 1 << i;
        let set = |mask: &mut u64, yes: bool| *mask |= if yes { bit } else { 0 };
        set(&mut classes.quote, byte == b'"');
        set(&mut classes.backslash, byte == b'\\');
        set(&mut classes.structural, b"{}[]:,".contains(&byte));
        set(&mut classes.blank, byte <= b' ');
    }
    classes
}

#[test]
fn classifies_every_byte_value_in_every_lane() {
    for byte in 0..=255u8 {
        for lane in [0, 7, 8, 15, 16, 31, 63] {
            let mut block = [b'a'; 64];
            block[lane] = byte;
            assert_eq!(
                classify(&block),
                classes_by_byte(&block),
                "{byte:#x} at {lane}"
            );
            assert_eq!(
                classify_words(&block),
                classes_by_byte(&block),
                "{byte:#x} at {lane}"
            );
        }
    }
}

/// A table of values and not-values, each judged as serde_json judges it.
#[test]
fn judges_as_serde_json() {
    let long = "x".repeat(70);
    let escapes = r#"\"\\\/\b\f\n\r\t\u00e9\uD83D"#.repeat(8);
    let cases: Vec<String> = vec![
        // Valid.
        "{}".into(),
        "[]".into(),
        r#"{"a":1,"b":[true,false,null],"c":{"d":-0.5e+10}}"#.into(),
        " [ 1 , { \"k\" : [ ] } , \"s\" ]".trim_start().into(),
        "[\n  {\n    \"a\": \"b\"\n  }\n]".into(),
        format!(r#"{{"{long}":"{long}","x":"{escapes}"}}"#),
        format!(r#"["{escapes}",{{"k":"\\\\"}},"\\\\\\\"",1]"#),
        r#"[0,-0,1.0,1e5,1E-5,123456789012345678901234567890]"#.into(),
        "[\"é\u{1F600}\\u0000\"]".into(),
        // Not valid.
        "{".into(),
        "[1,]".into(),
        "{\"a\":1,}".into(),
        "{\"a\"}".into(),
        "{\"a\" 1}".into(),
        "{1:2}".into(),
        "[1 2]".into(),
        "[01]".into(),
        "[1.]".into(),
        "[.5]".into(),
        "[1e]".into(),
        "[-]".into(),
        "[+1]".into(),
        "[tru]".into(),
        "[truex]".into(),
        "[nul]".into(),
        "[1x]".into(),
        "[\"a\"1]".into(),
        // Two strings with no token between, within a block and across one (and, valid, the same
        // with a comma between).
        "[\"a\"\"b\"]".into(),
        "[\"a\" \"b\"]".into(),
        "{\"a\"\"b\":1}".into(),
        "{\"a\":\"b\"\"c\"}".into(),
        format!("[\"{long}\"\"{long}\"]"),
        format!("[{}\"a\"\"b\"]", " ".repeat(60)),
        format!("[{}\"a\", \"b\"]", " ".repeat(60)),
        "[\"a\":1]".into(),
        "[1\"a\"]".into(),
        "[\"a\\q\"]".into(),
        "[\"a\\u12g4\"]".into(),
        "[\"tab\there\"]".into(),
        "[\"a\u{1}\"]".into(),
        "[\\\"a\\\"]".into(),
        "[\u{1}]".into(),
        "{\"a\":1]".into(),
        "[1}".into(),
        "[\"unterminated]".into(),
        format!("[\"{long}"),
        format!("[\"{long}\\"),
        "[\u{a0}]".into(),
    ];
    for case in cases {
        let body = case.as_bytes();
        let expected = serde_accepts(body).then_some(body.len());
        assert_eq!(value_end(body, 0), expected, "{case:?}");
        assert_eq!(disagreement(body), None, "{case:?}");
    }
}

#[test]
fn finds_the_end_of_a_value_inside_a_larger_body() {
    let body = br#"{"skip":{"a":[1,{"b":"}"}]},"next":2}"#;
    let start = 8;
    let end = value_end(body, start).unwrap();
    assert_eq!(&body[start..end], br#"{"a":[1,{"b":"}"}]}"#);
    // Past the end, anything: `value_end` does not look at it.
    assert_eq!(value_end(b"[1]]]", 0), Some(3));
    assert_eq!(value_end(b"\"s\"x", 0), Some(3));
    assert_eq!(value_end(b"12,", 0), Some(2));
}

#[test]
fn refuses_nesting_deeper_than_its_limit() {
    let depth = MAX_DEPTH as usize;
    let deep_enough = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(value_end(deep_enough.as_bytes(), 0), Some(2 * depth));
    let too_deep = format!("{}{}", "[".repeat(depth + 1), "]".repeat(depth + 1));
    assert_eq!(value_end(too_deep.as_bytes(), 0), None);
}

fn any_json() -> impl Strategy<Value = Value> {
    // Strings long enough to cross the 64-byte blocks.
    crate::testing::any_json(6, 80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any 64-byte block: both ways of classifying agree with the byte-by-byte answer.
    #[test]
    fn classifies_any_block(bytes in prop::collection::vec(
        prop::sample::select(&b"\"\\{}[]:, \t\n\r\x00\x01\x1f\x7f\x80\xffa0"[..]), 64)) {
        let block: [u8; 64] = bytes.try_into().unwrap();
        prop_assert_eq!(classify(&block), classes_by_byte(&block));
        prop_assert_eq!(classify_words(&block), classes_by_byte(&block));
    }

    /// Any JSON value as serde_json writes it, after any indentation that moves the blocks: skipped
    /// to its end.
    #[test]
    fn skips_any_value(value in any_json(), pretty in any::<bool>(), shift in 0..64usize) {
        let text = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.unwrap();
        let mut body = vec![b' '; shift];
        body.extend_from_slice(&text);
        prop_assert_eq!(value_end(&body, shift), Some(body.len()));
    }

    /// Any corruption of a value: where the skipper finds an end, serde_json accepts the bytes up to
    /// it; where serde_json accepts the whole, the skipper finds its end.
    #[test]
    fn never_accepts_what_serde_would_not(
        value in any_json(),
        edits in crate::testing::corruptions(),
    ) {
        let mut body = serde_json::to_vec(&value).unwrap();
        crate::testing::corrupt(&mut body, edits);
        match value_end(&body, 0) {
            Some(end) => prop_assert!(serde_accepts(&body[..end]),
                "accepted {:?}", String::from_utf8_lossy(&body[..end])),
            None => prop_assert!(!serde_accepts(&body) || body.first().is_some_and(u8::is_ascii_whitespace),
                "refused {:?}", String::from_utf8_lossy(&body)),
        }
    }
}
