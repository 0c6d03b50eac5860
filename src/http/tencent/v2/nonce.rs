//! The replay cache of the legacy API: a signed request names a `(SecretId, Nonce, Timestamp)`,
//! and this node accepts each such triple once. A triple is remembered until its timestamp
//! falls out of the accepted window ([`super::sign::MAX_SKEW_SECS`]), after which the timestamp
//! check refuses the request anyway. The cache is per node (docs/api.md says why).

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::sign::MAX_SKEW_SECS;

/// Most triples remembered at once; past it, new requests are refused (retryable) rather than
/// letting a replay through. A node takes far fewer signed legacy requests within 10 minutes.
pub const CAPACITY: usize = 1 << 20;

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This triple was accepted before.
    Replayed,
    /// The cache is full of triples still inside the window.
    Full,
}

/// Remembered triples, ordered by timestamp so the expired ones are dropped from the front.
pub struct NonceCache {
    seen: Mutex<BTreeSet<(u64, String, String)>>,
    capacity: usize,
}

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache::with_capacity(CAPACITY)
    }
}

impl NonceCache {
    pub fn with_capacity(capacity: usize) -> Self {
        NonceCache {
            seen: Mutex::new(BTreeSet::new()),
            capacity,
        }
    }

    /// Accepts the triple once; `now` is this node's wall clock in seconds. Call it only for a
    /// request whose signature and timestamp were verified.
    pub fn accept(
        &self,
        secret_id: &str,
        nonce: &str,
        timestamp: u64,
        now: u64,
    ) -> Result<(), Refused> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest_valid = now.saturating_sub(MAX_SKEW_SECS);
        while seen.first().is_some_and(|(t, _, _)| *t < oldest_valid) {
            seen.pop_first();
        }
        let entry = (timestamp, secret_id.to_string(), nonce.to_string());
        if seen.contains(&entry) {
            return Err(Refused::Replayed);
        }
        if seen.len() >= self.capacity {
            return Err(Refused::Full);
        }
        seen.insert(entry);
        Ok(())
    }

    /// How many triples are remembered.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triple_is_accepted_once() {
        let c = NonceCache::default();
        assert_eq!(c.accept("AKID1", "7", 1000, 1000), Ok(()));
        assert_eq!(c.accept("AKID1", "7", 1000, 1001), Err(Refused::Replayed));
        // Another nonce, timestamp or SecretId is another request.
        assert_eq!(c.accept("AKID1", "8", 1000, 1001), Ok(()));
        assert_eq!(c.accept("AKID1", "7", 1001, 1001), Ok(()));
        assert_eq!(c.accept("AKID2", "7", 1000, 1001), Ok(()));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn triples_are_forgotten_only_once_their_timestamp_is_out_of_the_window() {
        let c = NonceCache::default();
        c.accept("A", "1", 1000, 1000).unwrap();
        // Still inside the window: still refused.
        assert_eq!(
            c.accept("A", "1", 1000, 1000 + MAX_SKEW_SECS),
            Err(Refused::Replayed)
        );
        // Out of it (the timestamp check refuses such a request before it gets here).
        c.accept("A", "2", 1000 + MAX_SKEW_SECS + 1, 1000 + MAX_SKEW_SECS + 1)
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting() {
        let c = NonceCache::with_capacity(2);
        c.accept("A", "1", 1000, 1000).unwrap();
        c.accept("A", "2", 1000, 1000).unwrap();
        assert_eq!(c.accept("A", "3", 1000, 1000), Err(Refused::Full));
        assert_eq!(c.accept("A", "1", 1000, 1000), Err(Refused::Replayed));
        // Room again once the window has moved on.
        assert_eq!(c.accept("A", "3", 1400, 1400), Ok(()));
    }
}
