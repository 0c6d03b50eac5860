//! The CAM policy language (version 2.0), as Tencent Cloud publishes it: parsing a policy
//! document into the registry's typed statements ([`parse`]) and deciding whether a request is
//! allowed ([`evaluate`]).
//!
//! A document is `{"version": "2.0", "statement": [{"effect": "allow"|"deny", "action": …,
//! "resource": …, "condition": {<operator>: {<key>: <value or values>}}}]}`; `action` and
//! `resource` are a string or a list. Actions are `kms:<Action>` (or `name/kms:<Action>`), with
//! `*` wildcards; resources are `*` or six segments `qcs:<project>:kms:<region>:uin/<owner-uin>:
//! key/<KeyId>`, with `*` wildcards in any segment. Deny wins; with no allowing statement the
//! request is denied. docs/security.md has the whole model.

mod actions;
mod evaluate;
mod matching;
mod parse;

pub use actions::KNOWN_ACTIONS;
pub use evaluate::{evaluate, Decision, Facts};
pub use matching::wildcard;
pub use parse::{parse, PolicyError};

/// The CAM resource name of a key.
pub fn key_resource(region: &str, owner_uin: u64, key_id: &str) -> String {
    format!("qcs::kms:{region}:uin/{owner_uin}:key/{key_id}")
}

/// The CAM resource name of one hosted data key.
pub fn data_key_resource(region: &str, owner_uin: u64, data_key_id: &str) -> String {
    format!("qcs::kms:{region}:uin/{owner_uin}:datakey/{data_key_id}")
}

/// The CAM resource name that account-wide actions (CreateKey, ListKeys, GenerateRandom …) are
/// checked against: every key of the account in the region.
pub fn account_resource(region: &str, owner_uin: u64) -> String {
    format!("qcs::kms:{region}:uin/{owner_uin}:key/*")
}

#[cfg(test)]
mod tests;
