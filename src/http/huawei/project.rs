//! Huawei project ids. A Huawei credential works in a project, and a project is one account in
//! one region. raftkms derives each (account, region)'s project id instead of storing one: 32
//! hex digits of SHA-256 over a fixed label, the account's UIN and the region. So every node
//! finds the region of a request from the project id in its path without any new replicated
//! state, and `raftkms credential create --dialect huawei` can print the ids.

use sha2::{Digest, Sha256};

/// The project id of account `uin` in `region`.
pub fn project_id(uin: u64, region: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"raftkms huawei project id v1\0");
    h.update(uin.to_string().as_bytes());
    h.update(b"\0");
    h.update(region.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The region among `served` whose project id for `uin` is `project`.
pub fn region_of<'a>(uin: u64, project: &str, served: &'a [String]) -> Option<&'a String> {
    served.iter().find(|r| project_id(uin, r) == project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_name_one_account_in_one_region() {
        let p = project_id(100001, "ap-guangzhou");
        // The same derivation as jepsen/rkj/client.py's `huawei_project_id`.
        assert_eq!(p, "f31b4fb3c90d280e9b69a8a0e6a01e36");
        assert!(p.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(p, project_id(100002, "ap-guangzhou"));
        assert_ne!(p, project_id(100001, "ap-shanghai"));
        let served = vec!["ap-shanghai".to_string(), "ap-guangzhou".to_string()];
        assert_eq!(
            region_of(100001, &p, &served).map(String::as_str),
            Some("ap-guangzhou")
        );
        assert_eq!(region_of(100002, &p, &served), None);
    }
}
