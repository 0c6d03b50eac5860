//! Request rates per account and per credential, per class of action (token buckets, governor):
//! a flood from one credential, or from all the credentials of one account, is refused with
//! `KmsError::RateLimited` right after its signature check (before the read gate and the
//! operation), and leaves other callers served. The buckets are this node's own (not replicated): a client spreading its
//! requests over N nodes gets up to N times the rate.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{Caller, KmsError};
use crate::config::RateLimitsConfig;

/// What a request costs: a cryptographic operation, or anything else (key management, queries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionClass {
    Crypto,
    Management,
}

impl ActionClass {
    pub fn name(self) -> &'static str {
        match self {
            ActionClass::Crypto => "crypto",
            ActionClass::Management => "management",
        }
    }
}

/// The buckets of one node. A rate of 0 in the config means no limit for that bucket.
pub struct RateLimits {
    account: [Option<DefaultKeyedRateLimiter<u64>>; 2],
    credential: [Option<DefaultKeyedRateLimiter<String>>; 2],
    /// Keys seen since the last sweep of idle buckets.
    calls: std::sync::atomic::AtomicU64,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    // A bucket holds one second's worth: bursts up to the rate, then the rate.
    NonZeroU32::new(per_second).map(|n| RateLimiter::keyed(Quota::per_second(n)))
}

fn slot(class: ActionClass) -> usize {
    match class {
        ActionClass::Crypto => 0,
        ActionClass::Management => 1,
    }
}

/// How often (in admitted requests) buckets that are full again are dropped.
const SWEEP_EVERY: u64 = 1 << 16;

impl RateLimits {
    pub fn new(c: &RateLimitsConfig) -> Self {
        RateLimits {
            account: [
                keyed(c.account_crypto_per_second),
                keyed(c.account_management_per_second),
            ],
            credential: [
                keyed(c.credential_crypto_per_second),
                keyed(c.credential_management_per_second),
            ],
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes one token from the caller's credential bucket and its account's bucket of `class`.
    pub fn admit(&self, caller: &Caller, class: ActionClass) -> Result<(), KmsError> {
        let i = slot(class);
        if let Some(l) = &self.credential[i] {
            if l.check_key(&caller.credential_id).is_err() {
                return Err(KmsError::RateLimited {
                    per: "credential",
                    class: class.name(),
                });
            }
        }
        if let Some(l) = &self.account[i] {
            if l.check_key(&caller.uin).is_err() {
                return Err(KmsError::RateLimited {
                    per: "account",
                    class: class.name(),
                });
            }
        }
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for l in self.account.iter().flatten() {
                l.retain_recent();
            }
            for l in self.credential.iter().flatten() {
                l.retain_recent();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uin: u64, id: &str) -> Caller {
        Caller {
            uin,
            credential_id: id.into(),
            principal: crate::registry::iam::Principal::Root,
        }
    }

    #[test]
    fn buckets_are_per_credential_per_account_and_per_class() {
        let limits = RateLimits::new(&RateLimitsConfig {
            credential_crypto_per_second: 3,
            credential_management_per_second: 0,
            account_crypto_per_second: 5,
            account_management_per_second: 1,
        });
        let a1 = caller(1, "a1");
        let a2 = caller(1, "a2");
        let b = caller(2, "b");
        // One credential: 3 crypto requests, then refused for the credential.
        for _ in 0..3 {
            limits.admit(&a1, ActionClass::Crypto).unwrap();
        }
        assert!(matches!(
            limits.admit(&a1, ActionClass::Crypto),
            Err(KmsError::RateLimited {
                per: "credential",
                ..
            })
        ));
        // Another credential of the same account: 2 more, then the account's 5 are spent.
        limits.admit(&a2, ActionClass::Crypto).unwrap();
        limits.admit(&a2, ActionClass::Crypto).unwrap();
        assert!(matches!(
            limits.admit(&a2, ActionClass::Crypto),
            Err(KmsError::RateLimited { per: "account", .. })
        ));
        // Another account is not affected; management has its own bucket (1 per second).
        limits.admit(&b, ActionClass::Crypto).unwrap();
        limits.admit(&a1, ActionClass::Management).unwrap();
        assert!(limits.admit(&a1, ActionClass::Management).is_err());
        // After a second the buckets have refilled.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        limits.admit(&a1, ActionClass::Crypto).unwrap();
        limits.admit(&a1, ActionClass::Management).unwrap();
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = RateLimits::new(&RateLimitsConfig {
            credential_crypto_per_second: 0,
            credential_management_per_second: 0,
            account_crypto_per_second: 0,
            account_management_per_second: 0,
        });
        for _ in 0..10_000 {
            limits.admit(&caller(1, "a"), ActionClass::Crypto).unwrap();
        }
    }
}
