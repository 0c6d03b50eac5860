//! Tags on keys and hosted data keys, with Tencent Cloud's tag rules: at most 50 per resource,
//! keys unique, 1–255 characters, values 0–127 characters, both only letters (any script), digits,
//! spaces and `+ - = . _ : / @`, and the key prefixes `qcloud`, `tencent` and `project` reserved
//! for the system. Changed after creation through the raftkms extension ModifyResourceTags
//! (docs/api.md): a change carries what to set and what to remove, and apply works out the new
//! set, so two changes of one resource never lose each other's tags.

use super::RegistryError;

/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters.
pub const MAX_KEY_CHARS: usize = 255;
/// Longest tag value, in characters.
pub const MAX_VALUE_CHARS: usize = 127;
/// Key prefixes reserved for the system (compared without regard to ASCII case).
const RESERVED_PREFIXES: [&str; 3] = ["qcloud", "tencent", "project"];

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c)
}

fn invalid(why: String) -> RegistryError {
    RegistryError::InvalidTags(why)
}

/// One tag key.
pub fn validate_key(key: &str) -> Result<(), RegistryError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(invalid(format!(
            "a tag key must be 1 to {MAX_KEY_CHARS} characters"
        )));
    }
    if !key.chars().all(allowed) {
        return Err(invalid(
            "a tag key may hold only letters, digits, spaces and + - = . _ : / @".into(),
        ));
    }
    let lower = key.to_ascii_lowercase();
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
        return Err(invalid(format!(
            "tag keys starting with `{p}` are reserved for the system"
        )));
    }
    Ok(())
}

/// One tag value.
pub fn validate_value(value: &str) -> Result<(), RegistryError> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(invalid(format!(
            "a tag value must be at most {MAX_VALUE_CHARS} characters"
        )));
    }
    if !value.chars().all(allowed) {
        return Err(invalid(
            "a tag value may hold only letters, digits, spaces and + - = . _ : / @".into(),
        ));
    }
    Ok(())
}

/// A resource's whole set of tags: each valid, keys unique, at most [`MAX_TAGS`].
pub fn validate(tags: &[(String, String)]) -> Result<(), RegistryError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "a resource has at most {MAX_TAGS} tags, not {}",
            tags.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        validate_key(k)?;
        validate_value(v)?;
        if !seen.insert(k.as_str()) {
            return Err(RegistryError::TagKeysDuplicated);
        }
    }
    Ok(())
}

/// The tags after a change: `set` adds tags or gives existing keys new values (in order of
/// first appearance), `remove` takes keys away (absent ones are ignored). A key both set and
/// removed, or set twice, is refused; so is a result over [`MAX_TAGS`].
pub fn modify(
    current: &[(String, String)],
    set: &[(String, String)],
    remove: &[String],
) -> Result<Vec<(String, String)>, RegistryError> {
    validate(set)?;
    if let Some((k, _)) = set.iter().find(|(k, _)| remove.contains(k)) {
        return Err(invalid(format!(
            "tag key `{}` is both set and removed",
            k.chars().take(64).collect::<String>()
        )));
    }
    let mut out: Vec<(String, String)> = current
        .iter()
        .filter(|(k, _)| !remove.contains(k))
        .cloned()
        .collect();
    for (k, v) in set {
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    validate(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn tencents_rules() {
        assert!(validate(&[
            t("team", "storage"),
            t("部门", "电商"),
            t("a b+-=._:/@", "")
        ])
        .is_ok());
        for bad in [
            "",
            "has!bang",
            "qcloud:x",
            "Tencent-team",
            "project",
            &"k".repeat(256),
        ] {
            assert!(validate(&[t(bad, "v")]).is_err(), "{bad:?}");
        }
        assert!(validate(&[t("k", &"v".repeat(127))]).is_ok());
        assert!(validate(&[t("k", &"v".repeat(128))]).is_err());
        assert!(validate(&[t("k", "a\nb")]).is_err());
        assert_eq!(
            validate(&[t("k", "1"), t("k", "2")]),
            Err(RegistryError::TagKeysDuplicated)
        );
        let fifty: Vec<_> = (0..50).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(validate(&fifty).is_ok());
        let mut more = fifty.clone();
        more.push(t("k50", "v"));
        assert!(validate(&more).is_err());
    }

    #[test]
    fn modify_sets_overwrites_and_removes() {
        let cur = vec![t("a", "1"), t("b", "2")];
        assert_eq!(
            modify(
                &cur,
                &[t("b", "3"), t("c", "4")],
                &["a".into(), "zz".into()]
            )
            .unwrap(),
            vec![t("b", "3"), t("c", "4")]
        );
        assert!(modify(&cur, &[t("a", "1")], &["a".into()]).is_err());
        let fifty: Vec<_> = (0..50).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(modify(&fifty, &[t("one-more", "v")], &[]).is_err());
        assert_eq!(
            modify(&fifty, &[t("one-more", "v")], &["k0".into()])
                .unwrap()
                .len(),
            50
        );
    }
}
