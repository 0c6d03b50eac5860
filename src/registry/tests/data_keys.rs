//! Hosted data keys: creation rules (CMK, name, quota), the lifecycle, and deletion (scheduled,
//! and along with the CMK).

use super::*;
use data_key::{DataKeyOp, DataKeyRecord, DataKeyState};

pub(super) fn id(n: u8) -> String {
    format!("dddddddd-0000-0000-0000-0000000000{n:02}")
}

/// Data key `n` of `uin`, sealed under the key `key_record(cmk, ..)`, named `name`.
pub(super) fn record(n: u8, cmk: u8, uin: u64, name: &str) -> DataKeyRecord {
    DataKeyRecord {
        data_key_id: id(n),
        region: "ap-guangzhou".into(),
        owner_uin: uin,
        key_id: key_record(cmk, uin, String::new()).key_id,
        name: name.into(),
        description: String::new(),
        state: DataKeyState::Enabled,
        origin: key::Origin::TencentKms,
        number_of_bytes: 32,
        created_at: 1,
        deletion_date: 0,
        tags: vec![("team".into(), "a".into())],
        ciphertext: vec![2, 1, n],
        context: vec![],
    }
}

/// A registry with account 1 and its keys 0 and 2.
fn with_keys() -> Registry {
    let mut reg = Registry::default();
    let mut i = 0;
    let mut ok = |reg: &mut Registry, c: Command| {
        i += 1;
        assert_eq!(
            reg.apply(i, &env(i as u8, c)).unwrap().0,
            Outcome::Applied { index: i }
        );
    };
    ok(
        &mut reg,
        Command::CreateAccount {
            account: account::Account {
                uin: 1,
                app_id: 10,
                name: "a".into(),
                created_at: 1,
            },
        },
    );
    for (k, alias) in [(0, "k0"), (2, "k2")] {
        ok(
            &mut reg,
            Command::CreateKey {
                key: Box::new(key_record(k, 1, alias.into())),
                cmk_limit: 10,
            },
        );
    }
    reg
}

fn run(reg: &mut Registry, index: u64, now_s: u64, command: Command) -> Outcome {
    let e = Envelope {
        request_id: RequestId::random(),
        issued_at_ms: now_s * 1000,
        command,
    };
    reg.apply(index, &e).unwrap().0
}

fn create(reg: &mut Registry, index: u64, d: DataKeyRecord, limit: u32) -> Outcome {
    run(
        reg,
        index,
        1_000,
        Command::CreateDataKey {
            data_key: Box::new(d),
            limit,
        },
    )
}

fn op(reg: &mut Registry, index: u64, now_s: u64, ids: &[u8], op: DataKeyOp) -> Outcome {
    run(
        reg,
        index,
        now_s,
        Command::DataKeyOp {
            region: "ap-guangzhou".into(),
            uin: 1,
            data_key_ids: ids.iter().map(|n| id(*n)).collect(),
            op,
        },
    )
}

fn rejected(e: RegistryError) -> Outcome {
    Outcome::Rejected(e)
}

#[test]
fn creation_needs_the_callers_cmk_a_free_valid_name_and_room_in_the_quota() {
    let mut reg = with_keys();
    assert_eq!(
        create(&mut reg, 10, record(1, 0, 1, "db-key"), 2),
        Outcome::Applied { index: 10 }
    );
    // Another account's (or no) CMK.
    assert_eq!(
        create(&mut reg, 11, record(2, 0, 2, "x"), 2),
        rejected(RegistryError::KeyNotFound)
    );
    assert_eq!(
        create(&mut reg, 12, record(2, 3, 1, "x"), 2),
        rejected(RegistryError::KeyNotFound)
    );
    assert_eq!(
        create(&mut reg, 13, record(2, 2, 1, "db-key"), 2),
        rejected(RegistryError::DataKeyNameExists)
    );
    for bad in ["", "-lead", "has space", &"n".repeat(61)] {
        assert_eq!(
            create(&mut reg, 14, record(2, 2, 1, bad), 2),
            rejected(RegistryError::InvalidDataKeyName),
            "{bad:?}"
        );
    }
    let mut long = record(2, 2, 1, "ok");
    long.description = "d".repeat(101);
    assert_eq!(
        create(&mut reg, 15, long, 2),
        rejected(RegistryError::InvalidDataKeyDescription)
    );
    let mut empty = record(2, 2, 1, "ok");
    empty.number_of_bytes = 0;
    assert_eq!(
        create(&mut reg, 16, empty, 2),
        rejected(RegistryError::InvalidDataKeyLength)
    );
    assert_eq!(
        create(&mut reg, 17, record(1, 2, 1, "again"), 2),
        rejected(RegistryError::DataKeyExists)
    );
    assert_eq!(
        create(&mut reg, 18, record(2, 2, 1, "second"), 2),
        Outcome::Applied { index: 18 }
    );
    assert_eq!(
        create(&mut reg, 19, record(3, 2, 1, "third"), 2),
        rejected(RegistryError::DataKeyLimitExceeded)
    );
    assert_eq!(reg.data_keys().count("ap-guangzhou", 1), 2);
    // Nothing refused left a trace.
    assert_eq!(reg.data_keys().len(), 2);
    let k2 = key_record(2, 1, String::new()).key_id;
    let of_k2: Vec<&str> = reg.data_keys().of_cmk("ap-guangzhou", 1, &k2).collect();
    assert_eq!(of_k2, vec![id(2).as_str()]);
}

#[test]
fn the_lifecycle_follows_tencents_rules() {
    let mut reg = with_keys();
    create(&mut reg, 10, record(1, 0, 1, "one"), 10);
    create(&mut reg, 11, record(2, 0, 1, "two"), 10);
    let state = |reg: &Registry, n: u8| {
        reg.data_keys()
            .get("ap-guangzhou", 1, &id(n))
            .map(|d| d.state)
    };

    assert_eq!(
        op(&mut reg, 12, 1_000, &[1, 2], DataKeyOp::Disable),
        Outcome::Applied { index: 12 }
    );
    assert_eq!(state(&reg, 2), Some(DataKeyState::Disabled));
    assert_eq!(
        op(&mut reg, 13, 1_000, &[1, 1], DataKeyOp::Enable),
        rejected(RegistryError::DuplicatedDataKeyId)
    );
    assert_eq!(
        op(&mut reg, 14, 1_000, &[1, 9], DataKeyOp::Enable),
        rejected(RegistryError::DataKeyNotFound)
    );
    assert_eq!(
        state(&reg, 1),
        Some(DataKeyState::Disabled),
        "all or nothing"
    );
    assert_eq!(
        op(&mut reg, 15, 1_000, &[1], DataKeyOp::Enable),
        Outcome::Applied { index: 15 }
    );

    // Renaming: unique within the account and region; a key may keep its own name.
    assert_eq!(
        op(
            &mut reg,
            16,
            1_000,
            &[1],
            DataKeyOp::UpdateName { name: "two".into() }
        ),
        rejected(RegistryError::DataKeyNameExists)
    );
    assert_eq!(
        op(
            &mut reg,
            17,
            1_000,
            &[1],
            DataKeyOp::UpdateName { name: "one".into() }
        ),
        Outcome::Applied { index: 17 }
    );
    assert_eq!(
        op(
            &mut reg,
            18,
            1_000,
            &[1],
            DataKeyOp::UpdateName { name: "uno".into() }
        ),
        Outcome::Applied { index: 18 }
    );
    // The old name is free again.
    assert_eq!(
        op(
            &mut reg,
            19,
            1_000,
            &[2],
            DataKeyOp::UpdateName { name: "one".into() }
        ),
        Outcome::Applied { index: 19 }
    );

    // Deletion: 7 to 30 days, from Enabled or Disabled.
    assert_eq!(
        op(
            &mut reg,
            20,
            1_000,
            &[1],
            DataKeyOp::ScheduleDeletion { pending_days: 6 }
        ),
        rejected(RegistryError::InvalidPendingWindow)
    );
    assert_eq!(
        op(
            &mut reg,
            21,
            1_000,
            &[1],
            DataKeyOp::ScheduleDeletion { pending_days: 7 }
        ),
        Outcome::Applied { index: 21 }
    );
    let d = reg
        .data_keys()
        .get("ap-guangzhou", 1, &id(1))
        .cloned()
        .unwrap();
    assert_eq!(
        (d.state, d.deletion_date),
        (DataKeyState::PendingDelete, 1_000 + 7 * 86_400)
    );
    assert_eq!(
        reg.data_keys().count("ap-guangzhou", 1),
        1,
        "pending deletion does not count"
    );
    for (i, o) in [
        DataKeyOp::Enable,
        DataKeyOp::Disable,
        DataKeyOp::UpdateName { name: "z".into() },
        DataKeyOp::UpdateDescription {
            description: "z".into(),
        },
        DataKeyOp::ScheduleDeletion { pending_days: 7 },
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            op(&mut reg, 22 + i as u64, 1_000, &[1], o),
            rejected(RegistryError::DataKeyPendingDelete)
        );
    }
    assert_eq!(
        op(
            &mut reg,
            30,
            1_000,
            &[2],
            DataKeyOp::CancelDeletion { limit: 10 }
        ),
        rejected(RegistryError::DataKeyNotPendingDelete)
    );
    // Bringing it back must fit the quota (key 2 counts: a limit of 1 is full).
    assert_eq!(
        op(
            &mut reg,
            31,
            1_000,
            &[1],
            DataKeyOp::CancelDeletion { limit: 1 }
        ),
        rejected(RegistryError::DataKeyLimitExceeded)
    );
    assert_eq!(
        op(
            &mut reg,
            32,
            1_000,
            &[1],
            DataKeyOp::CancelDeletion { limit: 10 }
        ),
        Outcome::Applied { index: 32 }
    );
    let d = reg
        .data_keys()
        .get("ap-guangzhou", 1, &id(1))
        .cloned()
        .unwrap();
    assert_eq!((d.state, d.deletion_date), (DataKeyState::Disabled, 0));

    // The scheduled deletion happens only once its date has come by the proposer's clock.
    op(
        &mut reg,
        33,
        1_000,
        &[1],
        DataKeyOp::ScheduleDeletion { pending_days: 7 },
    );
    let due = 1_000 + 7 * 86_400;
    assert!(due::due_data_keys(&reg, due - 1, 10).is_empty());
    assert_eq!(due::due_data_keys(&reg, due, 10).len(), 1);
    assert_eq!(
        op(&mut reg, 34, due - 1, &[1], DataKeyOp::DeleteDue),
        rejected(RegistryError::NotDue)
    );
    assert_eq!(
        op(&mut reg, 35, due, &[2], DataKeyOp::DeleteDue),
        rejected(RegistryError::NotDue),
        "not pending deletion"
    );
    assert_eq!(
        op(&mut reg, 36, due, &[1], DataKeyOp::DeleteDue),
        Outcome::Applied { index: 36 }
    );
    assert!(reg.data_keys().get("ap-guangzhou", 1, &id(1)).is_none());
    // Its name is free again.
    assert_eq!(
        create(&mut reg, 37, record(3, 0, 1, "uno"), 10),
        Outcome::Applied { index: 37 }
    );
}

#[test]
fn a_deleted_cmk_takes_its_data_keys_along() {
    let mut reg = with_keys();
    create(&mut reg, 10, record(1, 0, 1, "under-k0"), 10);
    create(&mut reg, 11, record(2, 2, 1, "under-k2"), 10);
    let k0 = key_record(0, 1, String::new()).key_id;
    let key_op = |reg: &mut Registry, index, now, op| {
        run(
            reg,
            index,
            now,
            Command::KeyOp {
                region: "ap-guangzhou".into(),
                uin: 1,
                key_ids: vec![k0.clone()],
                op,
            },
        )
    };
    key_op(&mut reg, 12, 1_000, key::KeyOp::Disable);
    key_op(
        &mut reg,
        13,
        1_000,
        key::KeyOp::ScheduleDeletion { pending_days: 7 },
    );
    // Pending deletion of the CMK leaves its data keys alone (the deletion can be cancelled).
    assert!(reg.data_keys().get("ap-guangzhou", 1, &id(1)).is_some());
    let (outcome, changes) = reg
        .apply(
            14,
            &Envelope {
                request_id: RequestId::random(),
                issued_at_ms: (1_000 + 7 * 86_400) * 1000,
                command: Command::KeyOp {
                    region: "ap-guangzhou".into(),
                    uin: 1,
                    key_ids: vec![k0.clone()],
                    op: key::KeyOp::DeleteDue,
                },
            },
        )
        .unwrap();
    assert_eq!(outcome, Outcome::Applied { index: 14 });
    assert!(reg.data_keys().get("ap-guangzhou", 1, &id(1)).is_none());
    assert!(reg.data_keys().get("ap-guangzhou", 1, &id(2)).is_some());
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::Delete(k) if k.starts_with(data_key::PREFIX))));
    // The state persisted equals the state in memory.
    let reloaded = Registry::load(reg.dump().unwrap()).unwrap();
    assert_eq!(reloaded, reg);
}

#[test]
fn tags_change_on_keys_and_data_keys_within_tencents_rules() {
    let mut reg = with_keys();
    create(&mut reg, 10, record(1, 0, 1, "one"), 10);
    let t = |k: &str, v: &str| (k.to_string(), v.to_string());
    // A data key: set (overwriting team=a), remove, all at once.
    assert_eq!(
        op(
            &mut reg,
            11,
            1_000,
            &[1],
            DataKeyOp::ModifyTags {
                set: vec![t("team", "b"), t("env", "prod")],
                remove: vec![],
            }
        ),
        Outcome::Applied { index: 11 }
    );
    assert_eq!(
        reg.data_keys().get("ap-guangzhou", 1, &id(1)).unwrap().tags,
        vec![t("team", "b"), t("env", "prod")]
    );
    for (i, bad) in [
        DataKeyOp::ModifyTags {
            set: vec![t("qcloud:x", "v")],
            remove: vec![],
        },
        DataKeyOp::ModifyTags {
            set: vec![t("env", "v")],
            remove: vec!["env".into()],
        },
        DataKeyOp::ModifyTags {
            set: (0..49).map(|n| t(&format!("k{n}"), "v")).collect(),
            remove: vec![],
        },
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            matches!(
                op(&mut reg, 12 + i as u64, 1_000, &[1], bad),
                Outcome::Rejected(RegistryError::InvalidTags(_))
            ),
            "case {i}"
        );
    }
    // A key, in any state (here pending deletion).
    let k0 = key_record(0, 1, String::new()).key_id;
    let key_op = |reg: &mut Registry, index, op| {
        run(
            reg,
            index,
            1_000,
            Command::KeyOp {
                region: "ap-guangzhou".into(),
                uin: 1,
                key_ids: vec![k0.clone()],
                op,
            },
        )
    };
    key_op(&mut reg, 20, key::KeyOp::Disable);
    key_op(
        &mut reg,
        21,
        key::KeyOp::ScheduleDeletion { pending_days: 7 },
    );
    let change = key::KeyOp::ModifyTags {
        set: vec![t("owner", "ops")],
        remove: vec!["absent".into()],
    };
    assert_eq!(
        Command::KeyOp {
            region: "ap-guangzhou".into(),
            uin: 1,
            key_ids: vec![k0.clone()],
            op: change.clone(),
        }
        .required_level(),
        2
    );
    assert_eq!(key_op(&mut reg, 22, change), Outcome::Applied { index: 22 });
    assert_eq!(
        reg.keys().get("ap-guangzhou", 1, &k0).unwrap().tags,
        vec![t("owner", "ops")]
    );
}

#[test]
fn a_batch_cannot_give_two_data_keys_one_name() {
    let mut reg = with_keys();
    create(&mut reg, 10, record(1, 0, 1, "one"), 10);
    create(&mut reg, 11, record(2, 0, 1, "two"), 10);
    let before = reg.clone();
    assert_eq!(
        op(
            &mut reg,
            12,
            1_000,
            &[2, 1],
            DataKeyOp::UpdateName {
                name: "same".into()
            }
        ),
        rejected(RegistryError::DataKeyNameExists)
    );
    // Nothing changed but the dedup entry; and the state reloads as it is in memory.
    assert_eq!(reg.data_keys(), before.data_keys());
    assert_eq!(Registry::load(reg.dump().unwrap()).unwrap(), reg);
}

#[test]
fn one_deletion_of_two_keys_takes_the_data_keys_of_both() {
    let mut reg = with_keys();
    create(&mut reg, 10, record(1, 0, 1, "a"), 10);
    create(&mut reg, 11, record(2, 2, 1, "b"), 10);
    create(&mut reg, 12, record(3, 2, 1, "c"), 10);
    let ids = vec![
        key_record(0, 1, String::new()).key_id,
        key_record(2, 1, String::new()).key_id,
    ];
    let mut store: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        reg.dump().unwrap().into_iter().collect();
    let log: Vec<Envelope> = [
        (key::KeyOp::Disable, 1_000),
        (key::KeyOp::ScheduleDeletion { pending_days: 7 }, 1_000),
        (key::KeyOp::DeleteDue, 1_000 + 7 * 86_400),
    ]
    .into_iter()
    .map(|(op, at)| Envelope {
        request_id: RequestId::random(),
        issued_at_ms: at * 1000,
        command: Command::KeyOp {
            region: "ap-guangzhou".into(),
            uin: 1,
            key_ids: ids.clone(),
            op,
        },
    })
    .collect();
    let outcomes = super::model::replay(&mut reg, &mut store, &log, 13);
    assert_eq!(
        outcomes,
        (13..16)
            .map(|index| Outcome::Applied { index })
            .collect::<Vec<_>>()
    );
    assert!(reg.data_keys().is_empty());
    assert_eq!(reg.data_keys().count("ap-guangzhou", 1), 0);
    // The changes apply returned, replayed onto storage, reproduce the state in memory.
    assert_eq!(Registry::load(store).unwrap(), reg);
}

#[test]
fn data_key_commands_need_feature_level_2() {
    let d = Command::CreateDataKey {
        data_key: Box::new(record(1, 0, 1, "x")),
        limit: 1,
    };
    assert_eq!(d.required_level(), 2);
    let o = Command::DataKeyOp {
        region: "ap-guangzhou".into(),
        uin: 1,
        data_key_ids: vec![id(1)],
        op: DataKeyOp::Enable,
    };
    assert_eq!(o.required_level(), 2);
    // Post-quantum key usages came with level 2 too; other keys stay at the base level.
    let mut k = key_record(0, 1, "pq".into());
    assert_eq!(
        Command::CreateKey {
            key: Box::new(k.clone()),
            cmk_limit: 1
        }
        .required_level(),
        crate::registry::features::BASE_LEVEL
    );
    for usage in [
        key::KeyUsage::AsymmetricSignVerifyDilithium,
        key::KeyUsage::AsymmetricEncryptDecryptKyberAes,
    ] {
        k.usage = usage;
        let c = Command::CreateKey {
            key: Box::new(k.clone()),
            cmk_limit: 1,
        };
        assert_eq!(c.required_level(), 2, "{usage:?}");
        let p = Command::CreateProductKey {
            key: Box::new(k.clone()),
            cmk_limit: 1,
            product: "cbs".into(),
        };
        assert_eq!(p.required_level(), 2, "{usage:?}");
        let batch = Command::Batch {
            writes: vec![env(1, c)],
        };
        assert_eq!(batch.required_level(), 2, "{usage:?}");
    }
}
