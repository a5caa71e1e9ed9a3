//! The CEL text of each building block, as the API server receives it.

use super::*;
use crate::domain::policy::selector::LabelSelectorRequirement;
use crate::testing::labels;

fn atom(s: &str) -> Cel {
    Cel::atom(s)
}

#[test]
fn constants_fold_and_operands_get_parentheses_only_where_needed() {
    let cases = [
        (Cel::all([]), "true"),
        (Cel::any([]), "false"),
        (Cel::all([atom("a"), Cel::Const(false)]), "false"),
        (Cel::any([atom("a"), Cel::Const(true)]), "true"),
        (Cel::all([atom("a"), Cel::Const(true)]), "a"),
        (
            Cel::all([atom("a"), Cel::all([atom("b"), atom("c")])]),
            "a && b && c",
        ),
        (
            Cel::all([atom("a"), Cel::any([atom("b"), atom("c")])]),
            "a && (b || c)",
        ),
        (
            Cel::any([atom("a"), Cel::all([atom("b"), atom("c")])]),
            "a || (b && c)",
        ),
        (atom("has(x.y)").not(), "!has(x.y)"),
        (atom("x == 1").not(), "!(x == 1)"),
        (Cel::any([atom("a"), atom("b")]).not(), "!(a || b)"),
        (atom("a").not().not(), "a"),
        (Cel::Const(true).not(), "false"),
    ];
    for (cel, want) in cases {
        assert_eq!(cel.render(), want, "{cel:?}");
    }
}

#[test]
fn string_literals_escape_quotes_and_backslashes() {
    assert_eq!(quote("web"), "'web'");
    assert_eq!(quote(r"it's a\b"), r"'it\'s a\\b'");
}

#[test]
fn namespace_globs_compare_names_or_anchor_a_regular_expression() {
    let globs = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        (globs(&["shop"]), "request.namespace == 'shop'"),
        (globs(&["prod-*"]), "request.namespace.matches('^prod-.*$')"),
        (globs(&["team-?"]), "request.namespace.matches('^team-.$')"),
        (
            globs(&["a", "b-*"]),
            "request.namespace == 'a' || request.namespace.matches('^b-.*$')",
        ),
        (globs(&[]), "false"),
    ];
    for (g, want) in cases {
        assert_eq!(namespace_in(&g).render(), want, "{g:?}");
    }
}

#[test]
fn label_selectors_read_labels_only_where_they_are_present() {
    let expr = |key: &str, operator, values: &[&str]| LabelSelectorRequirement {
        key: key.to_owned(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let present = "has(object.metadata.labels) && 'app' in object.metadata.labels";
    let cases = [
        (LabelSelector::default(), "true".to_owned()),
        (
            LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..LabelSelector::default()
            },
            format!("{present} && object.metadata.labels['app'] == 'web'"),
        ),
        (
            LabelSelector {
                match_expressions: vec![expr("app", SelectorOperator::In, &["a", "b"])],
                ..LabelSelector::default()
            },
            format!("{present} && object.metadata.labels['app'] in ['a', 'b']"),
        ),
        (
            LabelSelector {
                match_expressions: vec![expr("app", SelectorOperator::NotIn, &["a"])],
                ..LabelSelector::default()
            },
            format!("!({present} && object.metadata.labels['app'] == 'a')"),
        ),
        (
            LabelSelector {
                match_expressions: vec![expr("app", SelectorOperator::Exists, &[])],
                ..LabelSelector::default()
            },
            present.to_owned(),
        ),
        (
            LabelSelector {
                match_expressions: vec![expr("app", SelectorOperator::DoesNotExist, &[])],
                ..LabelSelector::default()
            },
            format!("!({present})"),
        ),
    ];
    for (selector, want) in cases {
        assert_eq!(
            Object::New.labels_match(&selector).render(),
            want,
            "{selector:?}"
        );
    }
}

#[test]
fn a_namespace_selector_reads_the_name_label_and_assumes_the_others_match() {
    let selector = |key: &str, operator, values: &[&str]| Match {
        namespace_selector: Some(LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: key.to_owned(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            ..LabelSelector::default()
        }),
        ..Match::default()
    };
    let name = "kubernetes.io/metadata.name";
    let cases = [
        (
            selector(name, SelectorOperator::In, &["a", "b"]),
            "request.namespace in ['a', 'b']",
        ),
        (
            selector(name, SelectorOperator::NotIn, &["legacy"]),
            "!(request.namespace == 'legacy')",
        ),
        (selector(name, SelectorOperator::Exists, &[]), "true"),
        (selector(name, SelectorOperator::DoesNotExist, &[]), "false"),
        (
            selector("exposure", SelectorOperator::In, &["public"]),
            "true",
        ),
    ];
    for (m, want) in cases {
        assert_eq!(may_match(&m, Object::New).render(), want, "{m:?}");
    }
}

#[test]
fn types_count_an_absent_or_empty_type_as_cluster_ip() {
    let cases = [
        (
            vec![ServiceType::LoadBalancer],
            "has(oldObject.spec.type) && oldObject.spec.type == 'LoadBalancer'",
        ),
        (
            vec![ServiceType::ClusterIP, ServiceType::NodePort],
            "!has(oldObject.spec.type) || oldObject.spec.type in ['', 'ClusterIP', 'NodePort']",
        ),
    ];
    for (types, want) in cases {
        assert_eq!(Object::Old.type_in(&types).render(), want, "{types:?}");
    }
}
