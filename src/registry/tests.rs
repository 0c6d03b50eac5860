use proptest::prelude::*;

use super::*;

fn env(id: u8, command: Command) -> Envelope {
    Envelope {
        request_id: RequestId([id; 16]),
        issued_at_ms: 1_700_000_000_000,
        command,
    }
}

fn key_record(id: u8, uin: u64, alias: String) -> key::KeyRecord {
    key::KeyRecord {
        key_id: format!("00000000-0000-0000-0000-0000000000{id:02}"),
        region: "ap-guangzhou".into(),
        owner_uin: uin,
        alias,
        description: String::new(),
        usage: key::KeyUsage::EncryptDecrypt,
        algorithm: crate::crypto::SymmetricAlgorithm::Sm4Gcm,
        public_key: vec![],
        // Odd ids are EXTERNAL keys, so the import operations have something to act on.
        origin: if id % 2 == 1 {
            key::Origin::External
        } else {
            key::Origin::TencentKms
        },
        state: key::KeyState::Enabled,
        created_at: 1,
        deletion_date: 0,
        rotation_enabled: false,
        rotate_days: 0,
        last_rotate_time: 0,
        next_rotate_time: 0,
        last_manual_rotate: 0,
        tags: vec![],
        versions: vec![key::MaterialVersion {
            version: 1,
            created_at: 1,
            wrapped: vec![id; 8],
        }],
        import: None,
        material_valid_to: 0,
        material_fingerprint: vec![],
    }
}

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
                wrapped_private: vec![t; 4],
                valid_to: 1_700_000_000 + days * 86_400,
            }
        }),
        (0u8..3, 0u8..2, 0u64..3).prop_map(|(t, m, days)| KeyOp::ImportMaterial {
            token: format!("t{t}"),
            material: key::MaterialVersion {
                version: 1,
                created_at: 3,
                wrapped: vec![m; 8]
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
                wrapped: vec![version as u8; 8]
            },
            manual,
            min_manual_interval: 86_400,
        }),
    ]
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
fn replay(
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

#[test]
fn duplicate_request_is_applied_once_and_answers_the_same() {
    let mut reg = Registry::default();
    let put = env(
        1,
        Command::PutRecord {
            name: "x".into(),
            value: vec![1],
        },
    );
    let (first, _) = reg.apply(1, &put).unwrap();
    assert_eq!(first, Outcome::Applied { index: 1 });
    // Overwrite with another request, then replay the first one: it must not win again.
    reg.apply(
        2,
        &env(
            2,
            Command::PutRecord {
                name: "x".into(),
                value: vec![2],
            },
        ),
    )
    .unwrap();
    let (again, changes) = reg.apply(3, &put).unwrap();
    assert_eq!(again, Outcome::Applied { index: 1 });
    assert!(changes.is_empty());
    assert_eq!(reg.records().get("x"), Some(&[2u8][..]));
}

#[test]
fn dedup_window_evicts_deterministically() {
    let mut reg = Registry::default();
    reg.apply(
        1,
        &env(
            1,
            Command::PutRecord {
                name: "x".into(),
                value: vec![],
            },
        ),
    )
    .unwrap();
    assert!(reg.dedup().get(&RequestId([1; 16])).is_some());
    reg.apply(
        1 + dedup::WINDOW + 1,
        &env(
            2,
            Command::PutRecord {
                name: "y".into(),
                value: vec![],
            },
        ),
    )
    .unwrap();
    assert!(reg.dedup().get(&RequestId([1; 16])).is_none());
    assert_eq!(reg.dedup().len(), 1);
}

#[test]
fn rejected_batch_changes_nothing() {
    let mut reg = Registry::default();
    let bad = Command::PutRecords {
        records: vec![("ok".into(), vec![1]), (String::new(), vec![2])],
    };
    let (outcome, changes) = reg.apply(1, &env(1, bad)).unwrap();
    assert_eq!(outcome, Outcome::Rejected(RegistryError::InvalidName));
    assert!(reg.records().is_empty());
    // Only the dedup entry is persisted.
    assert_eq!(changes.len(), 1);
    let (o, _) = reg
        .apply(
            2,
            &env(
                2,
                Command::DeleteRecord {
                    name: "nope".into(),
                },
            ),
        )
        .unwrap();
    assert_eq!(o, Outcome::Rejected(RegistryError::RecordNotFound));
}

fn key_op(reg: &mut Registry, index: u64, now_s: u64, op: key::KeyOp) -> Outcome {
    let e = Envelope {
        request_id: RequestId::random(),
        issued_at_ms: now_s * 1000,
        command: Command::KeyOp {
            region: "ap-guangzhou".into(),
            uin: 1,
            key_ids: vec![key_record(0, 1, "a".into()).key_id],
            op,
        },
    };
    reg.apply(index, &e).unwrap().0
}

#[test]
fn key_lifecycle_follows_the_state_rules() {
    use key::{KeyOp, KeyState};
    let mut reg = Registry::default();
    let acct = account::Account {
        uin: 1,
        app_id: 10,
        name: "a".into(),
        created_at: 1,
    };
    reg.apply(1, &env(1, Command::CreateAccount { account: acct }))
        .unwrap();
    let (o, _) = reg
        .apply(
            2,
            &env(
                2,
                Command::CreateKey {
                    key: Box::new(key_record(0, 1, "a".into())),
                    cmk_limit: 1,
                },
            ),
        )
        .unwrap();
    assert_eq!(o, Outcome::Applied { index: 2 });
    // Quota of 1 reached; a duplicate alias is refused before that matters for another account.
    let (o, _) = reg
        .apply(
            3,
            &env(
                3,
                Command::CreateKey {
                    key: Box::new(key_record(1, 1, "b".into())),
                    cmk_limit: 1,
                },
            ),
        )
        .unwrap();
    assert_eq!(o, Outcome::Rejected(RegistryError::CmkLimitExceeded));
    let (o, _) = reg
        .apply(
            4,
            &env(
                4,
                Command::CreateKey {
                    key: Box::new(key_record(1, 1, "a".into())),
                    cmk_limit: 5,
                },
            ),
        )
        .unwrap();
    assert_eq!(o, Outcome::Rejected(RegistryError::AliasExists));

    let now = 1_000_000;
    let state = |reg: &Registry| {
        reg.keys()
            .get("ap-guangzhou", 1, &key_record(0, 1, "a".into()).key_id)
            .unwrap()
            .state
    };
    assert_eq!(
        key_op(
            &mut reg,
            5,
            now,
            KeyOp::ScheduleDeletion { pending_days: 7 }
        ),
        Outcome::Rejected(RegistryError::ShouldBeDisabled)
    );
    assert_eq!(
        key_op(&mut reg, 6, now, KeyOp::CancelDeletion { cmk_limit: 5 }),
        Outcome::Rejected(RegistryError::NotPendingDelete)
    );
    assert_eq!(
        key_op(&mut reg, 7, now, KeyOp::Archive),
        Outcome::Applied { index: 7 }
    );
    assert_eq!(state(&reg), KeyState::Archived);
    assert_eq!(
        key_op(&mut reg, 8, now, KeyOp::Disable),
        Outcome::Rejected(RegistryError::StateNotSupported)
    );
    assert_eq!(
        key_op(&mut reg, 9, now, KeyOp::CancelArchive),
        Outcome::Applied { index: 9 }
    );
    assert_eq!(
        key_op(&mut reg, 10, now, KeyOp::Disable),
        Outcome::Applied { index: 10 }
    );
    assert_eq!(
        key_op(
            &mut reg,
            11,
            now,
            KeyOp::ScheduleDeletion { pending_days: 6 }
        ),
        Outcome::Rejected(RegistryError::InvalidPendingWindow)
    );
    assert_eq!(
        key_op(
            &mut reg,
            12,
            now,
            KeyOp::ScheduleDeletion { pending_days: 7 }
        ),
        Outcome::Applied { index: 12 }
    );
    assert_eq!(state(&reg), KeyState::PendingDelete);
    // Deletion is refused before the date by the proposer's clock, accepted after.
    assert_eq!(
        key_op(&mut reg, 13, now + 7 * 86_400 - 1, KeyOp::DeleteDue),
        Outcome::Rejected(RegistryError::NotDue)
    );
    assert_eq!(
        key_op(
            &mut reg,
            14,
            now + 1,
            KeyOp::CancelDeletion { cmk_limit: 5 }
        ),
        Outcome::Applied { index: 14 }
    );
    assert_eq!(state(&reg), KeyState::Disabled);
    assert_eq!(
        key_op(
            &mut reg,
            15,
            now,
            KeyOp::ScheduleDeletion { pending_days: 7 }
        ),
        Outcome::Applied { index: 15 }
    );
    assert_eq!(
        key_op(&mut reg, 16, now + 7 * 86_400, KeyOp::DeleteDue),
        Outcome::Applied { index: 16 }
    );
    assert!(reg
        .keys()
        .get("ap-guangzhou", 1, &key_record(0, 1, "a".into()).key_id)
        .is_none());
    // The alias is free again.
    let (o, _) = reg
        .apply(
            17,
            &env(
                17,
                Command::CreateKey {
                    key: Box::new(key_record(1, 1, "a".into())),
                    cmk_limit: 5,
                },
            ),
        )
        .unwrap();
    assert_eq!(o, Outcome::Applied { index: 17 });
}

#[test]
fn rotation_rules() {
    use key::{KeyOp, MaterialVersion};
    let mut reg = Registry::default();
    let acct = account::Account {
        uin: 1,
        app_id: 10,
        name: "a".into(),
        created_at: 1,
    };
    reg.apply(1, &env(1, Command::CreateAccount { account: acct }))
        .unwrap();
    reg.apply(
        2,
        &env(
            2,
            Command::CreateKey {
                key: Box::new(key_record(0, 1, "a".into())),
                cmk_limit: 5,
            },
        ),
    )
    .unwrap();
    let rot = |version, manual| KeyOp::Rotate {
        material: MaterialVersion {
            version,
            created_at: 0,
            wrapped: vec![version as u8],
        },
        manual,
        min_manual_interval: 86_400,
    };
    let now = 2_000_000;
    assert_eq!(
        key_op(&mut reg, 3, now, rot(2, false)),
        Outcome::Rejected(RegistryError::NotDue)
    );
    assert_eq!(
        key_op(&mut reg, 4, now, rot(3, true)),
        Outcome::Rejected(RegistryError::StaleRotation)
    );
    assert_eq!(
        key_op(&mut reg, 5, now, rot(2, true)),
        Outcome::Applied { index: 5 }
    );
    assert_eq!(
        key_op(&mut reg, 6, now + 10, rot(3, true)),
        Outcome::Rejected(RegistryError::RotateRateLimited)
    );
    assert_eq!(
        key_op(&mut reg, 7, now, KeyOp::EnableRotation { rotate_days: 7 }),
        Outcome::Applied { index: 7 }
    );
    assert_eq!(
        key_op(&mut reg, 8, now + 7 * 86_400, rot(3, false)),
        Outcome::Applied { index: 8 }
    );
    let k = reg
        .keys()
        .get("ap-guangzhou", 1, &key_record(0, 1, "a".into()).key_id)
        .unwrap();
    assert_eq!(
        k.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(k.next_rotate_time, now + 14 * 86_400);
}

#[test]
fn cancelling_a_deletion_cannot_exceed_the_quota() {
    use key::KeyOp;
    let mut reg = Registry::default();
    let acct = account::Account {
        uin: 1,
        app_id: 10,
        name: "a".into(),
        created_at: 1,
    };
    reg.apply(1, &env(1, Command::CreateAccount { account: acct }))
        .unwrap();
    reg.apply(
        2,
        &env(
            2,
            Command::CreateKey {
                key: Box::new(key_record(0, 1, "a".into())),
                cmk_limit: 1,
            },
        ),
    )
    .unwrap();
    assert_eq!(
        key_op(&mut reg, 3, 1_000, KeyOp::Disable),
        Outcome::Applied { index: 3 }
    );
    assert_eq!(
        key_op(
            &mut reg,
            4,
            1_000,
            KeyOp::ScheduleDeletion { pending_days: 7 }
        ),
        Outcome::Applied { index: 4 }
    );
    // The pending key no longer counts, so a new one fits ...
    let (o, _) = reg
        .apply(
            5,
            &env(
                5,
                Command::CreateKey {
                    key: Box::new(key_record(2, 1, "b".into())),
                    cmk_limit: 1,
                },
            ),
        )
        .unwrap();
    assert_eq!(o, Outcome::Applied { index: 5 });
    // ... but bringing the old one back would make two.
    assert_eq!(
        key_op(&mut reg, 6, 1_000, KeyOp::CancelDeletion { cmk_limit: 1 }),
        Outcome::Rejected(RegistryError::CmkLimitExceeded)
    );
    assert_eq!(
        key_op(&mut reg, 7, 1_000, KeyOp::CancelDeletion { cmk_limit: 2 }),
        Outcome::Applied { index: 7 }
    );
}

#[test]
fn replica_keys_share_material_and_follow_their_primary() {
    use key::{KeyOp, KeyState, MaterialVersion};
    let mut reg = Registry::default();
    let mut index = 0;
    let mut apply = |reg: &mut Registry, command: Command| {
        index += 1;
        let e = Envelope {
            request_id: RequestId::random(),
            issued_at_ms: 2_000_000_000,
            command,
        };
        reg.apply(index, &e).unwrap().0
    };
    let acct = account::Account {
        uin: 1,
        app_id: 10,
        name: "a".into(),
        created_at: 1,
    };
    apply(&mut reg, Command::CreateAccount { account: acct });
    let primary = key_record(0, 1, "p".into());
    let id = primary.key_id.clone();
    apply(
        &mut reg,
        Command::CreateKey {
            key: Box::new(primary),
            cmk_limit: 5,
        },
    );
    let spec = |region: &str, alias: &str| replica::ReplicaSpec {
        region: region.into(),
        alias: alias.into(),
        description: format!("replica in {region}"),
        tags: vec![],
    };
    let replicate =
        |source: &str, specs: Vec<replica::ReplicaSpec>, cmk_limit| Command::ReplicateKey {
            uin: 1,
            key_id: id.clone(),
            source_region: source.into(),
            replicas: specs,
            cmk_limit,
        };
    let op = |region: &str, op: KeyOp| Command::KeyOp {
        region: region.into(),
        uin: 1,
        key_ids: vec![id.clone()],
        op,
    };
    let rejected = |o: Outcome| match o {
        Outcome::Rejected(e) => e,
        other => panic!("expected a rejection, got {other:?}"),
    };

    // Destination = source, duplicated destinations and quota are refused, all or nothing.
    let e = rejected(apply(
        &mut reg,
        replicate("ap-guangzhou", vec![spec("ap-guangzhou", "x")], 5),
    ));
    assert!(matches!(e, RegistryError::CannotReplicate { .. }));
    let e = rejected(apply(
        &mut reg,
        replicate(
            "ap-guangzhou",
            vec![spec("ap-shanghai", "x"), spec("ap-shanghai", "y")],
            5,
        ),
    ));
    assert!(matches!(e, RegistryError::CannotReplicate { .. }));
    let e = rejected(apply(
        &mut reg,
        replicate("ap-guangzhou", vec![spec("ap-shanghai", "x")], 0),
    ));
    assert_eq!(e, RegistryError::CmkLimitExceeded);
    assert!(reg.replicas().is_empty());

    // Replicate to two regions: same KeyId and material, own alias/description, Enabled.
    let o = apply(
        &mut reg,
        replicate(
            "ap-guangzhou",
            vec![spec("ap-shanghai", "s"), spec("ap-singapore", "g")],
            5,
        ),
    );
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    let p = reg.keys().get("ap-guangzhou", 1, &id).unwrap().clone();
    for (region, alias) in [("ap-shanghai", "s"), ("ap-singapore", "g")] {
        let r = reg.keys().get(region, 1, &id).unwrap();
        assert_eq!(r.versions, p.versions);
        assert_eq!(r.alias, alias);
        assert_eq!(r.description, format!("replica in {region}"));
        assert_eq!(r.state, KeyState::Enabled);
        assert!(matches!(
            reg.replicas().role(region, 1, &id),
            replica::Role::Replica(_)
        ));
    }
    // Again into a region that has it: refused.
    let e = rejected(apply(
        &mut reg,
        replicate("ap-guangzhou", vec![spec("ap-shanghai", "z")], 5),
    ));
    assert!(matches!(e, RegistryError::ReplicaExists { .. }));
    // A replica cannot be replicated, rotated, or have its rotation changed.
    let e = rejected(apply(
        &mut reg,
        replicate("ap-shanghai", vec![spec("ap-beijing", "z")], 5),
    ));
    assert!(matches!(e, RegistryError::CannotReplicate { .. }));
    let rot = |version| KeyOp::Rotate {
        material: MaterialVersion {
            version,
            created_at: 0,
            wrapped: vec![version as u8; 4],
        },
        manual: true,
        min_manual_interval: 0,
    };
    let e = rejected(apply(&mut reg, op("ap-shanghai", rot(2))));
    assert_eq!(
        e,
        RegistryError::ReplicaFollowsPrimary {
            primary_region: "ap-guangzhou".into()
        }
    );
    let e = rejected(apply(
        &mut reg,
        op("ap-singapore", KeyOp::EnableRotation { rotate_days: 30 }),
    ));
    assert!(matches!(e, RegistryError::ReplicaFollowsPrimary { .. }));

    // Disabling a replica leaves the primary and the other replica alone; rotating the primary
    // (even with a disabled replica) reaches every replica in the same apply.
    apply(&mut reg, op("ap-shanghai", KeyOp::Disable));
    assert_eq!(
        reg.keys().get("ap-guangzhou", 1, &id).unwrap().state,
        KeyState::Enabled
    );
    let o = apply(&mut reg, op("ap-guangzhou", rot(2)));
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    apply(
        &mut reg,
        op("ap-guangzhou", KeyOp::EnableRotation { rotate_days: 30 }),
    );
    for region in ["ap-guangzhou", "ap-shanghai", "ap-singapore"] {
        let k = reg.keys().get(region, 1, &id).unwrap();
        assert_eq!(k.versions.len(), 2, "{region}");
        assert_eq!(k.versions[1].wrapped, vec![2u8; 4]);
        assert!(k.rotation_enabled, "{region}");
    }

    // The primary cannot be scheduled for deletion while replicas exist.
    apply(&mut reg, op("ap-guangzhou", KeyOp::Disable));
    let e = rejected(apply(
        &mut reg,
        op("ap-guangzhou", KeyOp::ScheduleDeletion { pending_days: 7 }),
    ));
    assert!(matches!(e, RegistryError::HasReplicas { .. }));
    // Deleting the replicas (after their window) removes them from the set; then it can go.
    let later = Envelope {
        request_id: RequestId::random(),
        issued_at_ms: (2_000_000 + 8 * 86_400) * 1000,
        command: op("ap-shanghai", KeyOp::DeleteDue),
    };
    for region in ["ap-shanghai", "ap-singapore"] {
        apply(&mut reg, op(region, KeyOp::Disable));
        let o = apply(
            &mut reg,
            op(region, KeyOp::ScheduleDeletion { pending_days: 7 }),
        );
        assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
        let mut e = later.clone();
        e.request_id = RequestId::random();
        e.command = op(region, KeyOp::DeleteDue);
        let o = reg.apply(1000, &e).unwrap().0;
        assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
        assert!(reg.keys().get(region, 1, &id).is_none());
    }
    assert!(reg.replicas().is_empty());
    assert_eq!(
        reg.replicas().role("ap-guangzhou", 1, &id),
        replica::Role::Single
    );
    let o = apply(
        &mut reg,
        op("ap-guangzhou", KeyOp::ScheduleDeletion { pending_days: 7 }),
    );
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");

    // EXTERNAL keys are not replicated.
    let ext = key_record(1, 1, "e".into());
    let ext_id = ext.key_id.clone();
    apply(
        &mut reg,
        Command::CreateKey {
            key: Box::new(ext),
            cmk_limit: 5,
        },
    );
    let e = rejected(apply(
        &mut reg,
        Command::ReplicateKey {
            uin: 1,
            key_id: ext_id,
            source_region: "ap-guangzhou".into(),
            replicas: vec![spec("ap-shanghai", "e")],
            cmk_limit: 5,
        },
    ));
    assert!(matches!(e, RegistryError::CannotReplicate { .. }));
}
