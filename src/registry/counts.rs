//! Per (region, account) counts derived from a table (keys or hosted data keys counting against
//! their quota), kept in step with the table so a quota check is not a scan. Never persisted.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionCounts(BTreeMap<(String, u64), usize>);

impl RegionCounts {
    /// The count of account `uin` in `region`.
    pub fn get(&self, region: &str, uin: u64) -> usize {
        self.0.get(&(region.to_string(), uin)).copied().unwrap_or(0)
    }

    /// One more for (`region`, `uin`).
    pub fn add(&mut self, region: &str, uin: u64) {
        *self.0.entry((region.to_string(), uin)).or_insert(0) += 1;
    }

    /// One fewer for (`region`, `uin`); an entry that reaches 0 is dropped.
    pub fn remove(&mut self, region: &str, uin: u64) {
        let slot = (region.to_string(), uin);
        if let Some(n) = self.0.get_mut(&slot) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(&slot);
            }
        }
    }
}

/// The storage key of a record of a regional table: `prefix`, the region, NUL, the record's id.
pub fn regional_storage_key(prefix: &[u8], region: &str, id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(region.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}
