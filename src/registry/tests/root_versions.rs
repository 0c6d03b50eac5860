//! Root-key versions as apply keeps them: installation in order, compare-and-set re-wraps,
//! retirement only when nothing uses a version, values under a retired version refused, and the
//! per-version counts.

use super::*;
use crate::registry::root_keys::{self, RewrapItem, RewrapTarget};

/// A stand-in for a value wrapped under root `version` (the header is all apply reads).
pub(super) fn wrapped(version: u32, tag: u8) -> Vec<u8> {
    root_keys::stand_in(version, &[tag])
}

struct Fixture {
    reg: Registry,
    index: u64,
}

impl Fixture {
    /// Account 1 with root version 1, key 0 (two material versions) and credential AKID1.
    fn new() -> Self {
        let mut f = Fixture {
            reg: Registry::default(),
            index: 0,
        };
        f.ok(Command::InstallRootKey {
            sealed: vec![9; 60],
        });
        f.ok(Command::CreateAccount {
            account: account::Account {
                uin: 1,
                app_id: 10,
                name: "a".into(),
                created_at: 1,
            },
        });
        let mut k = key_record(0, 1, "a".into());
        k.versions = vec![material(1, wrapped(1, 1)), material(2, wrapped(1, 2))];
        f.ok(Command::CreateKey {
            key: Box::new(k),
            cmk_limit: 10,
        });
        f.ok(credential("AKID1", wrapped(1, 3)));
        f
    }

    fn run(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let e = Envelope {
            request_id: RequestId::random(),
            issued_at_ms: 1_700_000_000_000,
            command,
        };
        self.reg.apply(self.index, &e).unwrap().0
    }

    fn ok(&mut self, command: Command) {
        let out = self.run(command);
        assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
    }

    fn refused(&mut self, command: Command) -> RegistryError {
        let before = self.reg.clone();
        match self.run(command) {
            Outcome::Rejected(e) => {
                assert_eq!(before.root_keys, self.reg.root_keys);
                assert_eq!(before.keys, self.reg.keys);
                assert_eq!(before.accounts, self.reg.accounts);
                e
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn key(&self) -> &key::KeyRecord {
        self.reg
            .keys()
            .get("ap-guangzhou", 1, &key_record(0, 1, String::new()).key_id)
            .unwrap()
    }

    fn uses(&self) -> Vec<(u32, u64)> {
        self.reg.root_uses().iter().collect()
    }
}

fn material(version: u32, wrapped: Vec<u8>) -> key::MaterialVersion {
    key::MaterialVersion {
        version,
        created_at: 1,
        wrapped,
    }
}

fn credential(secret_id: &str, wrapped: Vec<u8>) -> Command {
    Command::CreateCredential {
        credential: account::Credential {
            secret_id: secret_id.into(),
            uin: 1,
            wrapped_secret_key: wrapped,
            created_at: 1,
        },
    }
}

fn install(version: u32) -> Command {
    Command::InstallRootKeyVersion {
        version,
        sealed: vec![version as u8; 60],
    }
}

fn material_item(version: u32, old: Vec<u8>, new: Vec<u8>) -> RewrapItem {
    RewrapItem {
        target: RewrapTarget::Material {
            region: "ap-guangzhou".into(),
            key_id: key_record(0, 1, String::new()).key_id,
            version,
        },
        old,
        new,
    }
}

#[test]
fn versions_are_installed_in_order_and_the_newest_is_current() {
    let mut f = Fixture::new();
    assert_eq!(f.reg.root_keys().current(), Some(1));
    assert_eq!(
        f.refused(install(3)),
        RegistryError::RootKeyVersionConflict { current: 1 }
    );
    assert_eq!(
        f.refused(install(1)),
        RegistryError::RootKeyVersionConflict { current: 1 }
    );
    f.ok(install(2));
    assert_eq!(f.reg.root_keys().current(), Some(2));
    assert_eq!(f.reg.root_keys().sealed(2), Some(&[2u8; 60][..]));
    // A second rotation that raced with the first (it read version 1 as current) is refused.
    assert_eq!(
        f.refused(install(2)),
        RegistryError::RootKeyVersionConflict { current: 2 }
    );
    assert_eq!(
        f.refused(Command::InstallRootKey { sealed: vec![1] }),
        RegistryError::RootKeyAlreadyInstalled
    );
    // No rotation before the first root key.
    let mut empty = Registry::default();
    let (out, _) = empty.apply(1, &env(1, install(2))).unwrap();
    assert_eq!(out, Outcome::Rejected(RegistryError::RootKeyNotInstalled));
}

#[test]
fn a_rewrap_replaces_only_values_that_are_still_what_the_leader_read() {
    let mut f = Fixture::new();
    f.ok(install(2));
    assert_eq!(f.uses(), vec![(1, 3)]);
    f.ok(Command::Rewrap {
        items: vec![
            material_item(1, wrapped(1, 1), wrapped(2, 11)),
            // Stale: version 2's bytes are not these any more.
            material_item(2, wrapped(1, 99), wrapped(2, 12)),
            // A missing key, version and credential: skipped.
            material_item(7, wrapped(1, 1), wrapped(2, 13)),
            RewrapItem {
                target: RewrapTarget::Credential {
                    secret_id: "AKID-none".into(),
                },
                old: wrapped(1, 3),
                new: wrapped(2, 14),
            },
            RewrapItem {
                target: RewrapTarget::Credential {
                    secret_id: "AKID1".into(),
                },
                old: wrapped(1, 3),
                new: wrapped(2, 15),
            },
        ],
    });
    assert_eq!(f.key().versions[0].wrapped, wrapped(2, 11));
    assert_eq!(f.key().versions[1].wrapped, wrapped(1, 2));
    assert_eq!(
        f.reg
            .accounts()
            .credential("AKID1")
            .unwrap()
            .wrapped_secret_key,
        wrapped(2, 15)
    );
    assert_eq!(f.uses(), vec![(1, 1), (2, 2)]);
    // Version 1 still protects one value: it cannot be retired yet.
    assert_eq!(
        f.refused(Command::RetireRootKey { version: 1 }),
        RegistryError::RootKeyInUse {
            version: 1,
            values: 1
        }
    );
    f.ok(Command::Rewrap {
        items: vec![material_item(2, wrapped(1, 2), wrapped(2, 12))],
    });
    assert_eq!(f.uses(), vec![(2, 3)]);
    assert_eq!(
        f.refused(Command::RetireRootKey { version: 2 }),
        RegistryError::RootKeyIsCurrent { version: 2 }
    );
    f.ok(Command::RetireRootKey { version: 1 });
    assert_eq!(f.reg.root_keys().versions().collect::<Vec<_>>(), vec![2]);
    assert_eq!(
        f.refused(Command::RetireRootKey { version: 1 }),
        RegistryError::RootKeyVersionUnknown { version: 1 }
    );
    // The persisted form reloads to the same registry, derived counts included.
    let reloaded = Registry::load(f.reg.dump().unwrap()).unwrap();
    assert_eq!(reloaded, f.reg);
    assert_eq!(reloaded.root_keys().current(), Some(2));
}

#[test]
fn values_under_a_retired_or_unknown_root_version_are_refused() {
    let mut f = Fixture::new();
    f.ok(install(2));
    f.ok(Command::Rewrap {
        items: vec![
            material_item(1, wrapped(1, 1), wrapped(2, 11)),
            material_item(2, wrapped(1, 2), wrapped(2, 12)),
            RewrapItem {
                target: RewrapTarget::Credential {
                    secret_id: "AKID1".into(),
                },
                old: wrapped(1, 3),
                new: wrapped(2, 15),
            },
        ],
    });
    f.ok(Command::RetireRootKey { version: 1 });
    // A write wrapped under version 1 just before the retirement was applied: refused.
    assert_eq!(
        f.refused(credential("AKID2", wrapped(1, 4))),
        RegistryError::RootKeyVersionUnknown { version: 1 }
    );
    let mut k = key_record(2, 1, "b".into());
    k.versions = vec![material(1, wrapped(1, 5))];
    assert_eq!(
        f.refused(Command::CreateKey {
            key: Box::new(k.clone()),
            cmk_limit: 10
        }),
        RegistryError::RootKeyVersionUnknown { version: 1 }
    );
    // Under a version never installed: refused too; a rewrap to one as well.
    assert_eq!(
        f.refused(credential("AKID2", wrapped(5, 4))),
        RegistryError::RootKeyVersionUnknown { version: 5 }
    );
    assert_eq!(
        f.refused(Command::Rewrap {
            items: vec![material_item(1, wrapped(2, 11), wrapped(3, 1))]
        }),
        RegistryError::RootKeyVersionUnknown { version: 3 }
    );
    // Under the current version: stored.
    k.versions = vec![material(1, wrapped(2, 5))];
    f.ok(Command::CreateKey {
        key: Box::new(k),
        cmk_limit: 10,
    });
    f.ok(credential("AKID2", wrapped(2, 4)));
    assert_eq!(f.uses(), vec![(2, 5)]);
    // Revoking and deleting take values out of the counts.
    f.ok(Command::RevokeCredential {
        secret_id: "AKID2".into(),
    });
    assert_eq!(f.uses(), vec![(2, 4)]);
}

#[test]
fn import_keys_are_counted_and_rewrapped() {
    let mut f = Fixture::new();
    let mut k = key_record(1, 1, "ext".into());
    k.versions.clear();
    k.state = key::KeyState::PendingImport;
    let id = k.key_id.clone();
    f.ok(Command::CreateKey {
        key: Box::new(k),
        cmk_limit: 10,
    });
    f.ok(Command::KeyOp {
        region: "ap-guangzhou".into(),
        uin: 1,
        key_ids: vec![id.clone()],
        op: key::KeyOp::SetImportParameters {
            session: key::ImportSession {
                token: "t".into(),
                algorithm: key::WrappingAlgorithm::RsaesOaepSha256,
                public_key: vec![1],
                wrapped_private: wrapped(1, 7),
                valid_to: 1_800_000_000,
            },
        },
    });
    assert_eq!(f.uses(), vec![(1, 4)]);
    f.ok(install(2));
    f.ok(Command::Rewrap {
        items: vec![RewrapItem {
            target: RewrapTarget::Import {
                region: "ap-guangzhou".into(),
                key_id: id.clone(),
            },
            old: wrapped(1, 7),
            new: wrapped(2, 7),
        }],
    });
    let k = f.reg.keys().get("ap-guangzhou", 1, &id).unwrap();
    assert_eq!(k.import.as_ref().unwrap().wrapped_private, wrapped(2, 7));
    assert_eq!(f.uses(), vec![(1, 3), (2, 1)]);
}

#[test]
fn a_rewrap_batch_is_bounded() {
    let mut f = Fixture::new();
    f.ok(install(2));
    let items =
        vec![material_item(1, wrapped(1, 1), wrapped(2, 1)); root_keys::MAX_REWRAP_ITEMS + 1];
    assert_eq!(
        f.refused(Command::Rewrap { items }),
        RegistryError::TooManyRewrapItems {
            max: root_keys::MAX_REWRAP_ITEMS
        }
    );
}

#[test]
fn a_replica_follows_its_primarys_rewrap_and_is_never_rewrapped_alone() {
    let mut f = Fixture::new();
    let id = key_record(0, 1, String::new()).key_id;
    f.ok(Command::ReplicateKey {
        uin: 1,
        key_id: id.clone(),
        source_region: "ap-guangzhou".into(),
        replicas: vec![replica::ReplicaSpec {
            region: "ap-singapore".into(),
            alias: "r".into(),
            description: String::new(),
            tags: vec![],
        }],
        cmk_limit: 10,
    });
    f.ok(install(2));
    // An item naming the replica: skipped (the replica keeps its primary's bytes).
    f.ok(Command::Rewrap {
        items: vec![RewrapItem {
            target: RewrapTarget::Material {
                region: "ap-singapore".into(),
                key_id: id.clone(),
                version: 1,
            },
            old: wrapped(1, 1),
            new: wrapped(2, 21),
        }],
    });
    let replica = f.reg.keys().get("ap-singapore", 1, &id).unwrap().clone();
    assert_eq!(replica.versions, f.key().versions);
    // The primary's re-wrap reaches the replica in the same apply.
    f.ok(Command::Rewrap {
        items: vec![
            material_item(1, wrapped(1, 1), wrapped(2, 11)),
            material_item(2, wrapped(1, 2), wrapped(2, 12)),
        ],
    });
    let replica = f.reg.keys().get("ap-singapore", 1, &id).unwrap().clone();
    assert_eq!(replica.versions, f.key().versions);
    assert_eq!(replica.versions[0].wrapped, wrapped(2, 11));
    // 2 + 2 material values and the credential, all under version 2.
    assert_eq!(f.uses(), vec![(1, 1), (2, 4)]);
}
