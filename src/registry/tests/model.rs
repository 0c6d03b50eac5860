//! Model-based properties: random command logs applied on two replicas, and snapshot + rest,
//! reach identical state; persisted changes reproduce the in-memory state.

use proptest::prelude::*;

use super::root_versions::wrapped;
use super::*;

fn arb_key_op() -> impl Strategy<Value = key::KeyOp> {
    use key::KeyOp;
    prop_oneof![
        Just(KeyOp::Enable),
        Just(KeyOp::Disable),
        Just(KeyOp::Archive),
        Just(KeyOp::CancelArchive),
        (0u32..3).prop_map(|cmk_limit| KeyOp::CancelDeletion { cmk_limit }),
        Just(KeyOp::DeleteDue),
        Just(KeyOp::DisableRotation),
        Just(KeyOp::DeleteImportedMaterial),
        Just(KeyOp::ExpireMaterial),
        (0u8..3, 0u64..3).prop_map(|(t, days)| KeyOp::SetImportParameters {
            session: key::ImportSession {
                token: format!("t{t}"),
                algorithm: key::WrappingAlgorithm::RsaesOaepSha256,
                public_key: vec![t],
                wrapped_private: wrapped(1 + u32::from(t % 2), t),
                valid_to: 1_700_000_000 + days * 86_400,
            }
        }),
        (0u8..3, 0u8..2, 0u64..3).prop_map(|(t, m, days)| KeyOp::ImportMaterial {
            token: format!("t{t}"),
            material: key::MaterialVersion {
                version: 1,
                created_at: 3,
                wrapped: wrapped(1 + u32::from(m), m)
            },
            fingerprint: vec![m; 32],
            valid_to: if days == 0 {
                0
            } else {
                1_700_000_000 + days * 40 * 86_400
            },
        }),
        (0u32..40).prop_map(|pending_days| KeyOp::ScheduleDeletion { pending_days }),
        (0u32..400).prop_map(|rotate_days| KeyOp::EnableRotation { rotate_days }),
        prop::sample::select(vec!["x", "y", "bad alias"])
            .prop_map(|a| KeyOp::UpdateAlias { alias: a.into() }),
        (1u32..4, any::<bool>()).prop_map(|(version, manual)| KeyOp::Rotate {
            material: key::MaterialVersion {
                version,
                created_at: 5,
                wrapped: wrapped(1 + version % 3, version as u8)
            },
            manual,
            min_manual_interval: 86_400,
        }),
        arb_tag_change().prop_map(|(set, remove)| KeyOp::ModifyTags { set, remove }),
    ]
}

/// A tag change: keys from a small set (so changes meet), now and then an invalid one.
fn arb_tag_change() -> impl Strategy<Value = (Vec<(String, String)>, Vec<String>)> {
    let key = prop::sample::select(vec!["team", "env", "cost", "qcloud-x"]).prop_map(String::from);
    (
        prop::collection::vec(
            (
                key.clone(),
                prop::sample::select(vec!["a", "b", ""]).prop_map(String::from),
            ),
            0..3,
        ),
        prop::collection::vec(key, 0..2),
    )
}

fn arb_command() -> impl Strategy<Value = Command> {
    let name =
        prop::sample::select(vec!["a", "b", "c", "d", "", "settings/quota"]).prop_map(String::from);
    let value = prop::collection::vec(any::<u8>(), 0..8);
    let key_id = (0u8..4).prop_map(|id| format!("00000000-0000-0000-0000-0000000000{id:02}"));
    prop_oneof![
        1 => (name.clone(), value.clone()).prop_map(|(name, value)| Command::PutRecord { name, value }),
        1 => prop::collection::vec((name.clone(), value), 0..3)
            .prop_map(|records| Command::PutRecords { records }),
        1 => name.prop_map(|name| Command::DeleteRecord { name }),
        2 => (1u64..3).prop_map(|uin| Command::CreateAccount {
            account: account::Account {
                uin,
                app_id: uin * 10,
                name: format!("acct{uin}"),
                created_at: 1
            }
        }),
        3 => (
            0u8..4,
            1u64..3,
            prop::sample::select(vec!["k1", "k2", "k3"]),
            1u32..4
        )
            .prop_map(|(id, uin, alias, cmk_limit)| Command::CreateKey {
                key: Box::new(key_record(id, uin, alias.into())),
                cmk_limit
            }),
        4 => (
            1u64..3,
            prop::collection::vec(key_id.clone(), 1..3),
            arb_key_op(),
            prop_oneof![2 => Just("ap-guangzhou".to_string()), 1 => arb_region()]
        )
            .prop_map(|(uin, key_ids, op, region)| Command::KeyOp {
                region,
                uin,
                key_ids,
                op,
            }),
        3 => (
            1u64..3,
            key_id,
            prop_oneof![3 => Just("ap-guangzhou".to_string()), 1 => arb_region()],
            prop::collection::vec(
                (
                    arb_region(),
                    prop::sample::select(vec!["r1", "r2", "k1", "bad alias"])
                ),
                0..3
            ),
            2u32..5
        )
            .prop_map(|(uin, key_id, source_region, specs, cmk_limit)| {
                Command::ReplicateKey {
                    uin,
                    key_id,
                    source_region,
                    replicas: specs
                        .into_iter()
                        .map(|(region, alias)| replica::ReplicaSpec {
                            region,
                            alias: alias.into(),
                            description: String::new(),
                            tags: vec![],
                        })
                        .collect(),
                    cmk_limit,
                }
            }),
        3 => arb_iam_command(),
        2 => arb_root_key_command(),
        1 => (1u32..4).prop_map(|level| Command::SetFeatureLevel { level }),
        2 => (0u8..4, prop::sample::select(vec!["cvm", "cbs", ""]), any::<bool>()).prop_map(
            |(id, product, bind)| {
                let binding = cloud_binding::CloudBinding {
                    region: "ap-guangzhou".into(),
                    uin: 1,
                    key_id: format!("00000000-0000-0000-0000-0000000000{id:02}"),
                    product_id: product.into(),
                    resource_id: "ins-1".into(),
                };
                if bind {
                    Command::BindCloudResource { binding }
                } else {
                    Command::UnbindCloudResource { binding }
                }
            }
        ),
        3 => (0u8..4, 0u8..4, 1u64..3, prop::sample::select(vec!["d1", "d2", "bad name"]), 1u32..4)
            .prop_map(|(id, cmk, uin, name, limit)| Command::CreateDataKey {
                data_key: Box::new(super::data_keys::record(id, cmk, uin, name)),
                limit,
            }),
        3 => (
            1u64..3,
            prop::collection::vec((0u8..4).prop_map(super::data_keys::id), 1..3),
            arb_data_key_op(),
        )
            .prop_map(|(uin, data_key_ids, op)| Command::DataKeyOp {
                region: "ap-guangzhou".into(),
                uin,
                data_key_ids,
                op,
            }),
    ]
}

fn arb_data_key_op() -> impl Strategy<Value = data_key::DataKeyOp> {
    use data_key::DataKeyOp;
    prop_oneof![
        Just(DataKeyOp::Enable),
        Just(DataKeyOp::Disable),
        prop::sample::select(vec!["d1", "d3", "bad name"])
            .prop_map(|n| DataKeyOp::UpdateName { name: n.into() }),
        Just(DataKeyOp::UpdateDescription {
            description: "x".repeat(101)
        }),
        (5u32..32).prop_map(|pending_days| DataKeyOp::ScheduleDeletion { pending_days }),
        (1u32..4).prop_map(|limit| DataKeyOp::CancelDeletion { limit }),
        Just(DataKeyOp::DeleteDue),
        arb_tag_change().prop_map(|(set, remove)| DataKeyOp::ModifyTags { set, remove }),
    ]
}

/// The data keys' derived indexes equal a scan, and every data key's CMK exists.
fn assert_data_key_indexes(reg: &Registry) {
    let mut scan: std::collections::BTreeMap<(String, u64), usize> = Default::default();
    for d in reg.data_keys().all() {
        if d.state != data_key::DataKeyState::PendingDelete {
            *scan.entry((d.region.clone(), d.owner_uin)).or_default() += 1;
        }
        scan.entry((d.region.clone(), d.owner_uin)).or_default();
        assert!(
            reg.keys().get(&d.region, d.owner_uin, &d.key_id).is_some(),
            "data key {} outlived its CMK {}",
            d.data_key_id,
            d.key_id
        );
        assert!(reg
            .data_keys()
            .of_cmk(&d.region, d.owner_uin, &d.key_id)
            .any(|id| id == d.data_key_id));
    }
    for ((region, uin), n) in scan {
        assert_eq!(reg.data_keys().count(&region, uin), n, "{region}/{uin}");
    }
}

/// Root-key installation, rotation, re-wraps (hitting and missing) and retirement.
fn arb_root_key_command() -> impl Strategy<Value = Command> {
    use crate::registry::root_keys::{RewrapItem, RewrapTarget};
    let target = prop_oneof![
        (0u8..4, 1u32..4).prop_map(|(id, version)| RewrapTarget::Material {
            region: "ap-guangzhou".into(),
            key_id: format!("00000000-0000-0000-0000-0000000000{id:02}"),
            version,
        }),
        (0u8..4).prop_map(|id| RewrapTarget::Import {
            region: "ap-guangzhou".into(),
            key_id: format!("00000000-0000-0000-0000-0000000000{id:02}"),
        }),
        prop::sample::select(vec!["AKID1", "AKID2"]).prop_map(|s| RewrapTarget::Credential {
            secret_id: s.into()
        }),
    ];
    let item = (target, 1u32..4, 0u8..4, 1u32..4, 0u8..4).prop_map(|(target, vo, to, vn, tn)| {
        RewrapItem {
            target,
            old: wrapped(vo, to),
            new: wrapped(vn, tn),
        }
    });
    prop_oneof![
        Just(Command::InstallRootKey {
            sealed: vec![1; 60]
        }),
        (1u32..5).prop_map(|version| Command::InstallRootKeyVersion {
            version,
            sealed: vec![version as u8; 60]
        }),
        prop::collection::vec(item, 0..4).prop_map(|items| Command::Rewrap { items }),
        (1u32..4).prop_map(|version| Command::RetireRootKey { version }),
        (
            1u64..3,
            prop::sample::select(vec!["AKID1", "AKID2"]),
            1u32..4,
            0u8..4
        )
            .prop_map(|(uin, secret_id, v, t)| Command::CreateCredential {
                credential: account::Credential {
                    secret_id: secret_id.into(),
                    uin,
                    wrapped_secret_key: wrapped(v, t),
                    created_at: 2,
                },
            }),
    ]
}

/// The maintained per-root-version counts equal a scan of every stored value.
fn assert_root_uses(reg: &Registry) {
    use crate::crypto::root_key::root_version_of;
    let mut scan: std::collections::BTreeMap<u32, u64> = Default::default();
    let values = reg
        .keys()
        .all()
        .flat_map(|k| k.wrapped_values().map(<[u8]>::to_vec).collect::<Vec<_>>())
        .chain(
            reg.accounts()
                .credentials()
                .map(|c| c.wrapped_secret_key.clone()),
        );
    for w in values {
        if let Some(v) = root_version_of(&w) {
            *scan.entry(v).or_default() += 1;
        }
    }
    assert_eq!(
        reg.root_uses().iter().collect::<Vec<_>>(),
        scan.into_iter().collect::<Vec<_>>()
    );
}

/// Identities, policies, attachments, identity credentials, revocations and product keys.
fn arb_iam_command() -> impl Strategy<Value = Command> {
    use iam::{IdentityKind, Policy, Statement};
    let kind = prop_oneof![Just(IdentityKind::User), Just(IdentityKind::Role)];
    let who = prop::sample::select(vec!["alice", "bob", "bad name"]).prop_map(String::from);
    let policy = prop::sample::select(vec!["p1", "p2"]).prop_map(String::from);
    let secret = prop::sample::select(vec!["AKID1", "AKID2", "AKID3"]).prop_map(String::from);
    prop_oneof![
        (1u64..3, kind.clone(), who.clone(), any::<bool>()).prop_map(|(uin, kind, name, svc)| {
            Command::CreateIdentity {
                identity: iam::Identity {
                    uin,
                    kind,
                    name,
                    service: svc.then(|| "cbs".to_string()),
                    policies: Default::default(),
                    created_at: 1,
                },
            }
        }),
        (1u64..3, kind.clone(), who.clone())
            .prop_map(|(uin, kind, name)| Command::DeleteIdentity { uin, kind, name }),
        (1u64..3, kind.clone(), who.clone(), secret.clone()).prop_map(
            |(uin, kind, name, secret_id)| Command::CreateIdentityCredential {
                credential: account::Credential {
                    secret_id,
                    uin,
                    wrapped_secret_key: wrapped(1, 2),
                    created_at: 2,
                },
                kind,
                name,
            }
        ),
        secret.prop_map(|secret_id| Command::RevokeCredential { secret_id }),
        (1u64..3, policy.clone(), any::<bool>(), 0usize..3).prop_map(|(uin, name, replace, n)| {
            Command::PutPolicy {
                policy: Policy {
                    uin,
                    name,
                    description: String::new(),
                    statements: (0..n)
                        .map(|i| Statement {
                            effect: iam::Effect::Allow,
                            actions: vec![format!("kms:Encrypt{i}")],
                            resources: vec!["*".into()],
                            conditions: vec![],
                        })
                        .collect(),
                    text: "{}".into(),
                    created_at: 3,
                    updated_at: 4,
                },
                replace,
            }
        }),
        (1u64..3, policy.clone()).prop_map(|(uin, name)| Command::DeletePolicy { uin, name }),
        (1u64..3, kind, who, policy, any::<bool>()).prop_map(
            |(uin, kind, name, policy, attach)| Command::AttachPolicy {
                uin,
                kind,
                name,
                policy,
                attach,
            }
        ),
        (1u64..3, 1u64..20).prop_map(|(node_id, seq)| Command::AuditCheckpoint {
            checkpoint: audit_heads::Checkpoint {
                node_id,
                seq,
                hash: [seq as u8; 32],
                at_ms: 1,
            },
        }),
        (0u8..4, 1u64..3, 1u32..4).prop_map(|(id, uin, cmk_limit)| Command::CreateProductKey {
            key: Box::new(key_record(id, uin, format!("prod{id}"))),
            cmk_limit,
            product: "cbs".into(),
        }),
    ]
}

fn arb_region() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["ap-guangzhou", "ap-shanghai", "ap-singapore"]).prop_map(String::from)
}

/// The maintained quota counts equal a scan of every key.
fn assert_quota_counts(reg: &Registry) {
    let mut scan: std::collections::BTreeMap<(String, u64), usize> = Default::default();
    for k in reg.keys().all() {
        if k.state != key::KeyState::PendingDelete {
            *scan.entry((k.region.clone(), k.owner_uin)).or_default() += 1;
        }
        scan.entry((k.region.clone(), k.owner_uin)).or_default();
    }
    for ((region, uin), n) in scan {
        assert_eq!(reg.keys().count(&region, uin), n, "{region}/{uin}");
    }
}

/// Every replica holds exactly its primary's material and rotation schedule.
fn assert_replicas_share_material(reg: &Registry) {
    for k in reg.keys().all() {
        if let replica::Role::Replica(set) = reg.replicas().role(&k.region, k.owner_uin, &k.key_id)
        {
            let p = reg
                .keys()
                .get(&set.primary_region, k.owner_uin, &k.key_id)
                .expect("a replica's primary exists");
            assert_eq!(
                k.versions, p.versions,
                "replica {} in {}",
                k.key_id, k.region
            );
            assert_eq!(k.rotation_enabled, p.rotation_enabled);
            assert_eq!(k.next_rotate_time, p.next_rotate_time);
        }
    }
}

/// A random command sequence; request ids are drawn from a small range so duplicates occur, and
/// the proposer's clock moves forward by random steps of up to 40 days.
fn arb_log() -> impl Strategy<Value = Vec<Envelope>> {
    prop::collection::vec((0u8..40, arb_command(), 0u64..40 * 86_400_000), 0..80).prop_map(
        |items| {
            let mut t = 1_700_000_000_000u64;
            items
                .into_iter()
                .map(|(id, c, step)| {
                    t += step;
                    Envelope {
                        issued_at_ms: t,
                        ..env(id, c)
                    }
                })
                .collect()
        },
    )
}

/// Applies `log` to `reg`, persisting changes into `store` as the state machine would.
pub(super) fn replay(
    reg: &mut Registry,
    store: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    log: &[Envelope],
    first_index: u64,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (i, e) in log.iter().enumerate() {
        let (outcome, changes) = reg.apply(first_index + i as u64, e).unwrap();
        for c in changes {
            match c {
                Change::Put(k, v) => {
                    store.insert(k, v);
                }
                Change::Delete(k) => {
                    store.remove(&k);
                }
            }
        }
        outcomes.push(outcome);
    }
    outcomes
}

proptest! {
    #[test]
    fn two_replicas_reach_identical_digests(log in arb_log()) {
        let (mut a, mut b) = (Registry::default(), Registry::default());
        let (mut sa, mut sb) = (Default::default(), Default::default());
        let oa = replay(&mut a, &mut sa, &log, 1);
        let ob = replay(&mut b, &mut sb, &log, 1);
        prop_assert_eq!(oa, ob);
        prop_assert_eq!(a.digest().unwrap(), b.digest().unwrap());
        prop_assert_eq!(&a, &b);
        assert_replicas_share_material(&a);
        assert_quota_counts(&a);
        assert_data_key_indexes(&a);
        assert_root_uses(&a);
        // The persisted changes reproduce exactly the in-memory state.
        let loaded = Registry::load(sa.clone()).unwrap();
        prop_assert_eq!(&loaded, &a);
        prop_assert_eq!(sa.into_iter().collect::<Vec<_>>(), a.dump().unwrap());
    }

    #[test]
    fn snapshot_plus_rest_equals_whole_log(log in arb_log(), cut in 0usize..60) {
        let cut = cut.min(log.len());
        let mut whole = Registry::default();
        let mut s = Default::default();
        let whole_outcomes = replay(&mut whole, &mut s, &log, 1);

        let mut head = Registry::default();
        let mut hs = Default::default();
        let mut outcomes = replay(&mut head, &mut hs, &log[..cut], 1);
        // "Snapshot": the canonical dump, reloaded into a fresh registry.
        let mut restored = Registry::load(head.dump().unwrap()).unwrap();
        outcomes.extend(replay(&mut restored, &mut hs, &log[cut..], 1 + cut as u64));

        prop_assert_eq!(outcomes, whole_outcomes);
        prop_assert_eq!(restored.digest().unwrap(), whole.digest().unwrap());
    }
}
