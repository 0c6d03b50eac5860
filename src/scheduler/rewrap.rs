//! Root-key rotation, second step: the leader re-wraps every stored value (key material, import
//! wrapping keys, credentials' secret keys) still under an older root-key version, in batches of
//! [`BATCH`] values, each batch one `Rewrap` command.
//!
//! A batch is read from the applied registry (a bounded scan from a cursor, so one pass over a
//! million keys reads each record once), re-wrapped outside the state lock, and proposed; apply
//! replaces a value only if it is still the bytes the leader read, so a batch that raced with a
//! rotation of a key, a new import or a revocation changes nothing it should not. Client requests
//! keep being served throughout: a value is readable under its old version until its batch is
//! applied, and under the new one after. A pass stops at the end of the registry; values it
//! skipped (a race, a failure, a leader change) are picked up by the next pass.

use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;
use crate::registry::account::credential_aad;
use crate::registry::key::{import_aad, material_aad};
use crate::registry::root_keys::{RewrapItem, RewrapTarget, MAX_REWRAP_ITEMS};
use crate::registry::{Command, Outcome, Registry};

/// Values per `Rewrap` command.
pub const BATCH: usize = 256;
/// Records read per batch at most (bounds how long one scan holds the state lock).
const SCAN: usize = 4096;

/// Where a pass is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cursor {
    /// Key records after this (region, KeyId) (`None`: from the first).
    Keys(Option<(String, String)>),
    /// Credentials after this SecretId.
    Credentials(Option<String>),
    Done,
}

/// A value to re-wrap: what it is, its AAD and its stored bytes.
struct Pending {
    target: RewrapTarget,
    aad: Vec<u8>,
    old: Vec<u8>,
}

/// Runs until the task is aborted at shutdown: every node keeps the root-key gauges current and
/// lets retired versions leave its memory; the leader re-wraps. A pass that moved nothing (values
/// it cannot open, or lost leadership) doubles the wait before the next, up to a minute.
pub async fn run(node: Arc<Node>) {
    let interval = Duration::from_millis(node.config().kms.scheduler_interval_ms);
    let mut wait = interval;
    loop {
        tokio::time::sleep(wait).await;
        let pending = observe(&node);
        node.keyring().prune_retired();
        if pending > 0 && node.is_leader() {
            let moved = pass(&node).await;
            wait = if moved > 0 {
                interval
            } else {
                (wait * 2).min(Duration::from_secs(60))
            };
        } else {
            wait = interval;
        }
    }
}

/// Updates the root-key gauges; returns how many values are under an older version.
fn observe(node: &Node) -> u64 {
    let state = node.state().read();
    let current = state.registry.root_keys().current().unwrap_or(0);
    let pending = state.registry.root_pending();
    node.metrics().root_key_version.set(i64::from(current));
    node.metrics()
        .root_key_pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    pending
}

/// One pass over the registry; returns how many values it re-wrapped (stored, as the leader's
/// registry shows after each batch).
pub async fn pass(node: &Node) -> u64 {
    let mut cursor = Cursor::Keys(None);
    let mut done = 0;
    while cursor != Cursor::Done {
        if !node.is_leader() {
            break;
        }
        // One batch's scan holds the state lock briefly; let requests run between batches.
        tokio::task::yield_now().await;
        let (pending, next) = {
            let state = node.state().read();
            let Some(current) = state.registry.root_keys().current() else {
                return done;
            };
            collect(&state.registry, current, &cursor)
        };
        cursor = next;
        if pending.is_empty() {
            continue;
        }
        let items = rewrap_all(node, pending);
        // A key with very many versions can make one batch longer than a command may carry.
        for chunk in items.chunks(MAX_REWRAP_ITEMS) {
            let writes = node.writes();
            let command = Command::Rewrap {
                items: chunk.to_vec(),
            };
            match writes.propose(writes.envelope(None, command)).await {
                Ok(Outcome::Applied { .. }) => {
                    let n = stored(&node.state().read().registry, chunk);
                    done += n;
                    node.metrics().root_key_rewrapped.inc_by(n);
                }
                Ok(other) => {
                    tracing::warn!(?other, "a root-key re-wrap batch was not applied");
                    return done;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a root-key re-wrap batch failed; retried on the next pass");
                    return done;
                }
            }
        }
    }
    if done > 0 {
        tracing::info!(
            values = done,
            "re-wrapped under the current root-key version"
        );
    }
    done
}

/// How many of `items` the registry now holds as their `new` bytes (the others were skipped by
/// the compare and set: the value had changed, or names a replica, which follows its primary).
fn stored(registry: &Registry, items: &[RewrapItem]) -> u64 {
    let holds = |item: &RewrapItem| -> bool {
        match &item.target {
            RewrapTarget::Material {
                region,
                key_id,
                version,
            } => registry
                .keys()
                .get_any(region, key_id)
                .and_then(|k| k.version(*version))
                .is_some_and(|m| m.wrapped == item.new),
            RewrapTarget::Import { region, key_id } => registry
                .keys()
                .get_any(region, key_id)
                .and_then(|k| k.import.as_ref())
                .is_some_and(|i| i.wrapped_private == item.new),
            RewrapTarget::Credential { secret_id } => registry
                .accounts()
                .credential(secret_id)
                .is_some_and(|c| c.wrapped_secret_key == item.new),
        }
    };
    items.iter().filter(|i| holds(i)).count() as u64
}

/// Re-wraps each pending value under the current root version (the ones that fail to open are
/// counted, logged and left for the next pass).
fn rewrap_all(node: &Node, pending: Vec<Pending>) -> Vec<RewrapItem> {
    let keyring = node.keyring();
    let mut items = Vec::with_capacity(pending.len());
    for p in pending {
        match keyring.rewrap(&p.aad, &p.old) {
            Ok(Some(new)) => items.push(RewrapItem {
                target: p.target,
                old: p.old,
                new,
            }),
            Ok(None) => {}
            Err(e) => {
                node.metrics().root_key_rewrap_failures.inc();
                tracing::warn!(target = ?p.target, error = %e, "cannot re-wrap a stored value");
            }
        }
    }
    items
}

/// Up to [`BATCH`] values under a root version other than `current`, from `cursor` on, reading
/// at most [`SCAN`] records; and where the next batch starts.
fn collect(registry: &Registry, current: u32, cursor: &Cursor) -> (Vec<Pending>, Cursor) {
    use crate::registry::root_keys::version_of;
    let old = |w: &[u8]| version_of(w).is_some_and(|v| v != current);
    let mut out = Vec::new();
    match cursor {
        Cursor::Keys(after) => {
            let mut last = None;
            for (scanned, k) in registry.keys().after(after.as_ref()).enumerate() {
                if out.len() >= BATCH || scanned >= SCAN {
                    return (out, Cursor::Keys(last));
                }
                last = Some((k.region.clone(), k.key_id.clone()));
                // A replica's material follows its primary's re-wrap (same apply).
                if matches!(
                    registry.replicas().role(&k.region, k.owner_uin, &k.key_id),
                    crate::registry::replica::Role::Replica(_)
                ) {
                    continue;
                }
                for m in &k.versions {
                    if old(&m.wrapped) {
                        out.push(Pending {
                            target: RewrapTarget::Material {
                                region: k.region.clone(),
                                key_id: k.key_id.clone(),
                                version: m.version,
                            },
                            aad: material_aad(&k.key_id, m.version, k.owner_uin),
                            old: m.wrapped.clone(),
                        });
                    }
                }
                if let Some(i) = k.import.as_ref().filter(|i| old(&i.wrapped_private)) {
                    out.push(Pending {
                        target: RewrapTarget::Import {
                            region: k.region.clone(),
                            key_id: k.key_id.clone(),
                        },
                        aad: import_aad(&k.key_id, &i.token, k.owner_uin),
                        old: i.wrapped_private.clone(),
                    });
                }
            }
            (out, Cursor::Credentials(None))
        }
        Cursor::Credentials(after) => {
            let mut last = None;
            for (scanned, c) in registry
                .accounts()
                .credentials_after(after.as_deref())
                .enumerate()
            {
                if out.len() >= BATCH || scanned >= SCAN {
                    return (out, Cursor::Credentials(last));
                }
                last = Some(c.secret_id.clone());
                if old(&c.wrapped_secret_key) {
                    out.push(Pending {
                        target: RewrapTarget::Credential {
                            secret_id: c.secret_id.clone(),
                        },
                        aad: credential_aad(&c.secret_id, c.uin),
                        old: c.wrapped_secret_key.clone(),
                    });
                }
            }
            (out, Cursor::Done)
        }
        Cursor::Done => (out, Cursor::Done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::account::{Account, Credential};
    use crate::registry::key::{KeyRecord, MaterialVersion};
    use crate::registry::{Envelope, RequestId};

    fn wrapped(version: u32, tag: u32) -> Vec<u8> {
        crate::registry::root_keys::stand_in(version, &tag.to_be_bytes())
    }

    fn apply(reg: &mut Registry, index: u64, command: Command) {
        let env = Envelope {
            request_id: RequestId::random(),
            issued_at_ms: 1_700_000_000_000,
            command,
        };
        let (outcome, _) = reg.apply(index, &env).unwrap();
        assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    }

    /// 300 keys with two versions each (one already under version 2) and 20 credentials: one
    /// pass finds each value of version 1 exactly once, in batches of at most `BATCH`.
    #[test]
    fn a_pass_finds_every_old_value_once_in_bounded_batches() {
        let mut reg = Registry::default();
        let mut i = 0;
        let mut next = || {
            i += 1;
            i
        };
        apply(
            &mut reg,
            next(),
            Command::InstallRootKey {
                sealed: vec![1; 60],
            },
        );
        apply(
            &mut reg,
            next(),
            Command::CreateAccount {
                account: Account {
                    uin: 1,
                    app_id: 1,
                    name: "a".into(),
                    created_at: 1,
                },
            },
        );
        apply(
            &mut reg,
            next(),
            Command::InstallRootKeyVersion {
                version: 2,
                sealed: vec![2; 60],
            },
        );
        for k in 0..300u32 {
            let key = KeyRecord {
                key_id: format!("key-{k:04}"),
                region: if k % 2 == 0 {
                    "ap-guangzhou"
                } else {
                    "ap-singapore"
                }
                .into(),
                owner_uin: 1,
                alias: format!("a{k}"),
                description: String::new(),
                usage: crate::registry::key::KeyUsage::EncryptDecrypt,
                algorithm: crate::crypto::SymmetricAlgorithm::Aes256Gcm,
                public_key: vec![],
                origin: crate::registry::key::Origin::TencentKms,
                state: crate::registry::key::KeyState::Enabled,
                created_at: 1,
                deletion_date: 0,
                rotation_enabled: false,
                rotate_days: 0,
                last_rotate_time: 0,
                next_rotate_time: 0,
                last_manual_rotate: 0,
                tags: vec![],
                versions: vec![
                    MaterialVersion {
                        version: 1,
                        created_at: 1,
                        wrapped: wrapped(1, k),
                    },
                    MaterialVersion {
                        version: 2,
                        created_at: 1,
                        wrapped: wrapped(2, k),
                    },
                ],
                import: None,
                material_valid_to: 0,
                material_fingerprint: vec![],
            };
            apply(
                &mut reg,
                next(),
                Command::CreateKey {
                    key: Box::new(key),
                    cmk_limit: 1000,
                },
            );
        }
        for c in 0..20u32 {
            apply(
                &mut reg,
                next(),
                Command::CreateCredential {
                    credential: Credential {
                        secret_id: format!("AKID{c:02}"),
                        uin: 1,
                        wrapped_secret_key: wrapped(1, 1000 + c),
                        created_at: 1,
                    },
                },
            );
        }
        assert_eq!(reg.root_pending(), 320);

        let mut cursor = Cursor::Keys(None);
        let mut seen = std::collections::BTreeSet::new();
        let mut batches = 0;
        while cursor != Cursor::Done {
            let (batch, next_cursor) = collect(&reg, 2, &cursor);
            assert!(batch.len() <= BATCH, "{}", batch.len());
            for p in batch {
                assert_eq!(crate::registry::root_keys::version_of(&p.old), Some(1));
                assert!(seen.insert(p.old), "a value found twice");
            }
            cursor = next_cursor;
            batches += 1;
            assert!(batches < 100, "the pass does not end");
        }
        assert_eq!(seen.len(), 320);
        // Nothing is found when the current version is the one every value has.
        let (batch, _) = collect(&reg, 1, &Cursor::Credentials(None));
        assert!(batch.is_empty());
    }
}
