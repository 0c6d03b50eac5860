use super::*;
use crate::registry::iam::Statement;

fn facts(ip: &str) -> Facts<'static> {
    Facts {
        ip: Some(ip.parse().unwrap()),
        now_ms: 1_800_000_000_000,
        resource_tags: None,
    }
}

fn key(id: &str) -> String {
    key_resource("ap-guangzhou", 100, id)
}

fn doc(statements: &str) -> Vec<Statement> {
    parse(
        &format!(r#"{{"version":"2.0","statement":[{statements}]}}"#),
        100,
    )
    .unwrap()
}

#[test]
fn an_allow_matches_its_action_and_resource_only() {
    let s = doc(
        r#"{"effect":"allow","action":["name/kms:Encrypt","kms:Decrypt"],
            "resource":"qcs::kms:ap-guangzhou:uin/100:key/k1"}"#,
    );
    let f = facts("10.0.0.1");
    assert_eq!(evaluate(&s, "kms:Encrypt", &key("k1"), &f), Decision::Allow);
    assert_eq!(evaluate(&s, "kms:Decrypt", &key("k1"), &f), Decision::Allow);
    assert_eq!(
        evaluate(&s, "kms:Encrypt", &key("k2"), &f),
        Decision::NoMatch
    );
    assert_eq!(
        evaluate(&s, "kms:DisableKey", &key("k1"), &f),
        Decision::NoMatch
    );
    // Another account's key of the same id.
    assert_eq!(
        evaluate(
            &s,
            "kms:Encrypt",
            &key_resource("ap-guangzhou", 101, "k1"),
            &f
        ),
        Decision::NoMatch
    );
}

#[test]
fn deny_wins_over_allow_in_any_order() {
    for order in [
        r#"{"effect":"allow","action":"kms:*","resource":"*"},
           {"effect":"deny","action":"kms:Decrypt","resource":"qcs::kms:*:uin/100:key/*"}"#,
        r#"{"effect":"deny","action":"kms:Decrypt","resource":"qcs::kms:*:uin/100:key/*"},
           {"effect":"allow","action":"kms:*","resource":"*"}"#,
    ] {
        let s = doc(order);
        let f = facts("10.0.0.1");
        assert_eq!(evaluate(&s, "kms:Decrypt", &key("k"), &f), Decision::Deny);
        assert_eq!(evaluate(&s, "kms:Encrypt", &key("k"), &f), Decision::Allow);
    }
}

#[test]
fn wildcards_in_actions_and_resources() {
    let s = doc(
        r#"{"effect":"allow","action":"kms:Describe*","resource":"qcs::kms:ap-*:uin/100:key/app-*"}"#,
    );
    let f = facts("10.0.0.1");
    assert_eq!(
        evaluate(&s, "kms:DescribeKeys", &key("app-1"), &f),
        Decision::Allow
    );
    assert_eq!(
        evaluate(&s, "kms:DescribeKey", &key("db-1"), &f),
        Decision::NoMatch
    );
    assert_eq!(
        evaluate(&s, "kms:Decrypt", &key("app-1"), &f),
        Decision::NoMatch
    );
    assert!(wildcard("a*b*c", "aXXbYYc") && !wildcard("a*b*c", "aXXbYY"));
    assert!(wildcard("*", "") && wildcard("**", "x") && !wildcard("", "x"));
}

#[test]
fn source_ip_conditions() {
    let s = doc(r#"{"effect":"allow","action":"kms:Encrypt","resource":"*",
            "condition":{"ip_equal":{"qcs:ip":["10.0.0.0/8","192.168.1.7"]}}}"#);
    for (ip, want) in [
        ("10.1.2.3", Decision::Allow),
        ("192.168.1.7", Decision::Allow),
        ("192.168.1.8", Decision::NoMatch),
        ("::ffff:10.9.9.9", Decision::Allow),
        ("2001:db8::1", Decision::NoMatch),
    ] {
        assert_eq!(
            evaluate(&s, "kms:Encrypt", &key("k"), &facts(ip)),
            want,
            "{ip}"
        );
    }
    let deny = doc(r#"{"effect":"allow","action":"kms:*","resource":"*"},
           {"effect":"deny","action":"kms:*","resource":"*",
            "condition":{"ip_not_equal":{"qcs:ip":"127.0.0.0/8"}}}"#);
    assert_eq!(
        evaluate(&deny, "kms:Encrypt", &key("k"), &facts("127.0.0.1")),
        Decision::Allow
    );
    assert_eq!(
        evaluate(&deny, "kms:Encrypt", &key("k"), &facts("10.0.0.1")),
        Decision::Deny
    );
    // Without a known address, a plain condition does not hold; _if_exist does.
    let unknown = Facts {
        ip: None,
        ..facts("1.1.1.1")
    };
    assert_eq!(
        evaluate(&s, "kms:Encrypt", &key("k"), &unknown),
        Decision::NoMatch
    );
    let lenient = doc(r#"{"effect":"allow","action":"kms:Encrypt","resource":"*",
            "condition":{"ip_equal_if_exist":{"qcs:ip":"10.0.0.0/8"}}}"#);
    assert_eq!(
        evaluate(&lenient, "kms:Encrypt", &key("k"), &unknown),
        Decision::Allow
    );
}

#[test]
fn resource_tag_and_time_conditions() {
    let s = doc(r#"{"effect":"allow","action":"kms:Encrypt","resource":"*",
            "condition":{"string_equal":{"qcs:resource_tag":"team&payments"},
                         "date_less_than":{"qcs:current_time":"2030-01-01T00:00:00Z"}}}"#);
    let tags = vec!["team&payments".to_string(), "env&prod".to_string()];
    let other = vec!["team&search".to_string()];
    let mut f = facts("10.0.0.1");
    f.resource_tags = Some(&tags);
    assert_eq!(evaluate(&s, "kms:Encrypt", &key("k"), &f), Decision::Allow);
    f.resource_tags = Some(&other);
    assert_eq!(
        evaluate(&s, "kms:Encrypt", &key("k"), &f),
        Decision::NoMatch
    );
    f.resource_tags = Some(&tags);
    f.now_ms = 1_900_000_000_000; // 2030-03
    assert_eq!(
        evaluate(&s, "kms:Encrypt", &key("k"), &f),
        Decision::NoMatch
    );
    assert_eq!(
        super::evaluate::parse_time("2030-01-01T00:00:00Z"),
        Some(1_893_456_000)
    );
    assert_eq!(
        super::evaluate::parse_time("1970-01-01T00:00:00.5Z"),
        Some(0)
    );
    assert_eq!(super::evaluate::parse_time("2030-13-01T00:00:00Z"), None);
    // Years that would overflow the day count are refused, not computed.
    assert_eq!(
        super::evaluate::parse_time("9000000000000000000-01-01T00:00:00Z"),
        None
    );
}

#[test]
fn malformed_policies_are_refused_precisely() {
    let cases = [
        ("not json", "not valid JSON"),
        (r#"{"statement":[]}"#, "version"),
        (r#"{"version":"1.0","statement":[]}"#, "2.0"),
        (r#"{"version":"2.0","statement":[]}"#, "1 to 100 statements"),
        (
            r#"{"version":"2.0","statement":[{"effect":"maybe","action":"kms:Encrypt","resource":"*"}]}"#,
            "effect",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrpyt","resource":"*"}]}"#,
            "unknown action `kms:Encrpyt`",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"cvm:RunInstances","resource":"*"}]}"#,
            "cvm:RunInstances",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"qcs::kms:gz:key/x"}]}"#,
            "six segments",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"qcs::kms:gz:uin/abc:key/x"}]}"#,
            "owner uin",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"qcs::kms:gz:uin/1:bucket/x"}]}"#,
            "key/<KeyId>",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"*","condition":{"ip_equal":{"qcs:ip":"10.0.0.300"}}}]}"#,
            "not an IP address",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"*","condition":{"string_equal":{"qcs:ip":"x"}}}]}"#,
            "does not apply to qcs:ip",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"*","condition":{"ip_equal":{"kms:whatever":"x"}}}]}"#,
            "unsupported condition key",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"*","condition":{"ip_approx":{"qcs:ip":"1.1.1.1"}}}]}"#,
            "unknown condition operator",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:Encrypt","resource":"*","principal":{"qcs":["*"]}}]}"#,
            "trust policy",
        ),
        (
            r#"{"version":"2.0","statement":[{"effect":"allow","action":[],"resource":"*"}]}"#,
            "at least one",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text, 100).unwrap_err();
        assert!(e.0.contains(want), "{text}: {e}");
    }
}

#[test]
fn a_policy_naming_a_missing_key_is_accepted_and_matches_nothing_else() {
    let s = doc(
        r#"{"effect":"allow","action":"kms:*","resource":"qcs::kms:ap-guangzhou:uin/100:key/no-such-key"}"#,
    );
    assert_eq!(
        evaluate(&s, "kms:Encrypt", &key("real"), &facts("1.1.1.1")),
        Decision::NoMatch
    );
}

#[test]
fn tencent_resource_forms_and_empty_segments_match_as_cam_reads_them() {
    let f = facts("10.0.0.1");
    // Tencent's own form of a key: key/creatorUin/<uin>/<KeyId>.
    let s = doc(
        r#"{"effect":"deny","action":"kms:Decrypt","resource":"qcs::kms:ap-guangzhou:uin/100:key/creatorUin/100/k1"},
           {"effect":"allow","action":"kms:*","resource":"*"}"#,
    );
    assert_eq!(evaluate(&s, "kms:Decrypt", &key("k1"), &f), Decision::Deny);
    assert_eq!(evaluate(&s, "kms:Decrypt", &key("k2"), &f), Decision::Allow);
    // Empty region (every region) and empty account (the policy's own).
    let s = doc(r#"{"effect":"deny","action":"kms:Encrypt","resource":"qcs::kms:::key/*"}"#);
    assert_eq!(evaluate(&s, "kms:Encrypt", &key("k1"), &f), Decision::Deny);
    assert_eq!(
        evaluate(
            &s,
            "kms:Encrypt",
            &key_resource("ap-shanghai", 100, "k9"),
            &f
        ),
        Decision::Deny
    );
    assert_eq!(
        evaluate(
            &s,
            "kms:Encrypt",
            &key_resource("ap-shanghai", 101, "k9"),
            &f
        ),
        Decision::NoMatch
    );
    // A project is refused rather than never matching.
    let e = parse(
        r#"{"version":"2.0","statement":[{"effect":"deny","action":"kms:*","resource":"qcs:id/7:kms:::key/*"}]}"#,
        100,
    )
    .unwrap_err();
    assert!(e.0.contains("no projects"), "{e}");
}

#[test]
fn data_keys_are_resources_of_their_own() {
    let f = facts("10.0.0.1");
    let s = doc(
        r#"{"effect":"allow","action":"kms:GetDataKeyPlaintext","resource":"qcs::kms:ap-guangzhou:uin/100:datakey/d1"}"#,
    );
    let d1 = super::data_key_resource("ap-guangzhou", 100, "d1");
    let d2 = super::data_key_resource("ap-guangzhou", 100, "d2");
    assert_eq!(
        evaluate(&s, "kms:GetDataKeyPlaintext", &d1, &f),
        Decision::Allow
    );
    assert_eq!(
        evaluate(&s, "kms:GetDataKeyPlaintext", &d2, &f),
        Decision::NoMatch
    );
    // A key named like the data key is another resource.
    assert_eq!(
        evaluate(&s, "kms:GetDataKeyPlaintext", &key("d1"), &f),
        Decision::NoMatch
    );
    // `key/*` does not cover data keys; `*` does.
    let s = doc(r#"{"effect":"allow","action":"kms:*","resource":"qcs::kms:::key/*"}"#);
    assert_eq!(
        evaluate(&s, "kms:DescribeDataKey", &d1, &f),
        Decision::NoMatch
    );
    let s = doc(r#"{"effect":"allow","action":"kms:*","resource":"*"}"#);
    assert_eq!(
        evaluate(&s, "kms:DescribeDataKey", &d1, &f),
        Decision::Allow
    );
    let e = parse(
        r#"{"version":"2.0","statement":[{"effect":"allow","action":"kms:*","resource":"qcs::kms:::datakey/"}]}"#,
        100,
    )
    .unwrap_err();
    assert!(e.0.contains("datakey/<DataKeyId>"), "{e}");
}
