//! `due::due_work`: what the leader's scheduler proposes at a given time.

use super::*;
use crate::crypto::SymmetricAlgorithm;
use due::{due_work, DueAction, DueWork};
use key::{KeyRecord, KeyState};

const T: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

/// A registry with account 1 holding `keys` (created as given, in ap-guangzhou unless changed).
fn registry_with(keys: Vec<KeyRecord>) -> Registry {
    let mut reg = Registry::default();
    let account = account::Account {
        uin: 1,
        app_id: 10,
        name: "a".into(),
        created_at: 1,
    };
    reg.apply(1, &env(1, Command::CreateAccount { account }))
        .unwrap();
    for (i, k) in keys.into_iter().enumerate() {
        let n = i as u8 + 2;
        let create = Command::CreateKey {
            key: Box::new(k),
            cmk_limit: 100,
        };
        let (o, _) = reg.apply(u64::from(n), &env(n, create)).unwrap();
        assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    }
    reg
}

/// Key `id` (odd ids are EXTERNAL) with a unique alias.
fn plain(id: u8) -> KeyRecord {
    key_record(id, 1, format!("k{id}"))
}

fn pending_delete(id: u8, date: u64) -> KeyRecord {
    KeyRecord {
        state: KeyState::PendingDelete,
        deletion_date: date,
        ..plain(id)
    }
}

fn expiring(id: u8, valid_to: u64) -> KeyRecord {
    KeyRecord {
        material_valid_to: valid_to,
        ..plain(id)
    }
}

fn rotating(id: u8, next: u64) -> KeyRecord {
    KeyRecord {
        rotation_enabled: true,
        rotate_days: 30,
        next_rotate_time: next,
        ..plain(id)
    }
}

fn work(k: &KeyRecord, action: DueAction) -> DueWork {
    DueWork {
        region: k.region.clone(),
        uin: k.owner_uin,
        key_id: k.key_id.clone(),
        action,
    }
}

fn rotate(next_version: u32) -> DueAction {
    DueAction::Rotate {
        algorithm: SymmetricAlgorithm::Sm4Gcm,
        next_version,
    }
}

#[test]
fn a_key_due_for_nothing_is_not_listed() {
    let disabled = KeyRecord {
        state: KeyState::Disabled,
        ..plain(2)
    };
    // Rotation off (even with a past next time), no ValidTo, not pending deletion.
    let rotation_off = KeyRecord {
        next_rotate_time: 1,
        ..plain(4)
    };
    let reg = registry_with(vec![plain(0), plain(1), disabled, rotation_off]);
    for now in [0, T, u64::MAX] {
        assert_eq!(due_work(&reg, now, 64), vec![], "at {now}");
    }
    assert_eq!(due_work(&Registry::default(), T, 64), vec![]);
}

#[test]
fn deletion_is_due_from_its_date_on() {
    let k = pending_delete(0, T);
    let reg = registry_with(vec![k.clone()]);
    assert_eq!(due_work(&reg, T - 1, 64), vec![]);
    assert_eq!(due_work(&reg, T, 64), vec![work(&k, DueAction::Delete)]);
    assert_eq!(due_work(&reg, T + 1, 64), vec![work(&k, DueAction::Delete)]);
}

#[test]
fn imported_material_expires_at_its_valid_to_if_there_is_material() {
    let k = expiring(1, T);
    let gone = KeyRecord {
        state: KeyState::PendingImport,
        versions: vec![],
        ..expiring(3, T)
    };
    let reg = registry_with(vec![k.clone(), gone]);
    assert_eq!(due_work(&reg, T - 1, 64), vec![]);
    assert_eq!(
        due_work(&reg, T, 64),
        vec![work(&k, DueAction::ExpireMaterial)]
    );
    assert_eq!(
        due_work(&reg, T + DAY, 64),
        vec![work(&k, DueAction::ExpireMaterial)]
    );
}

#[test]
fn rotation_is_due_at_its_next_time_with_the_next_version() {
    let k = rotating(0, T);
    let mut three = rotating(2, T);
    for v in 2..=3 {
        three.versions.push(key::MaterialVersion {
            version: v,
            created_at: 1,
            wrapped: vec![v as u8; 8],
        });
    }
    let reg = registry_with(vec![k.clone(), three.clone()]);
    assert_eq!(due_work(&reg, T - 1, 64), vec![]);
    let expected = vec![work(&k, rotate(2)), work(&three, rotate(4))];
    assert_eq!(due_work(&reg, T, 64), expected);
    assert_eq!(due_work(&reg, T + 1, 64), expected);
}

#[test]
fn only_enabled_keys_are_rotated() {
    let not_enabled = [
        KeyState::Disabled,
        KeyState::Archived,
        KeyState::PendingImport,
        KeyState::PendingDelete,
    ]
    .into_iter()
    .zip([0u8, 2, 4, 6])
    .map(|(state, id)| KeyRecord {
        state,
        // Far in the future, so a PendingDelete key is not due for deletion either.
        deletion_date: T + 30 * DAY,
        ..rotating(id, T)
    })
    .collect();
    let reg = registry_with(not_enabled);
    assert_eq!(due_work(&reg, T + DAY, 64), vec![]);
}

#[test]
fn replicas_are_not_rotated_but_are_deleted() {
    let primary = rotating(0, T);
    let id = primary.key_id.clone();
    let mut reg = registry_with(vec![primary.clone()]);
    let spec = |region: &str| replica::ReplicaSpec {
        region: region.into(),
        alias: "r".into(),
        description: String::new(),
        tags: vec![],
    };
    let mut index = 100;
    let mut apply = |reg: &mut Registry, command: Command| {
        index += 1;
        let e = Envelope {
            request_id: RequestId::random(),
            issued_at_ms: T * 1000,
            command,
        };
        let (o, _) = reg.apply(index, &e).unwrap();
        assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    };
    apply(
        &mut reg,
        Command::ReplicateKey {
            uin: 1,
            key_id: id.clone(),
            source_region: "ap-guangzhou".into(),
            replicas: vec![spec("ap-shanghai"), spec("ap-singapore")],
            cmk_limit: 10,
        },
    );
    // The replicas carry the primary's schedule, so they look due too; only the primary is.
    for region in ["ap-shanghai", "ap-singapore"] {
        let r = reg.keys().get(region, 1, &id).unwrap();
        assert!(r.rotation_enabled && r.next_rotate_time == T);
    }
    assert_eq!(due_work(&reg, T, 64), vec![work(&primary, rotate(2))]);

    // A replica pending deletion is deleted when due (in key order: region, then KeyId).
    for op in [
        key::KeyOp::Disable,
        key::KeyOp::ScheduleDeletion { pending_days: 7 },
    ] {
        apply(
            &mut reg,
            Command::KeyOp {
                region: "ap-singapore".into(),
                uin: 1,
                key_ids: vec![id.clone()],
                op,
            },
        );
    }
    let replica = reg.keys().get("ap-singapore", 1, &id).unwrap().clone();
    assert_eq!(
        due_work(&reg, T + 7 * DAY - 1, 64),
        vec![work(&primary, rotate(2))]
    );
    assert_eq!(
        due_work(&reg, T + 7 * DAY, 64),
        vec![work(&primary, rotate(2)), work(&replica, DueAction::Delete)]
    );
}

#[test]
fn deletion_comes_before_expiry_and_expiry_before_rotation() {
    // EXTERNAL, pending deletion and expired: deleted.
    let doomed = KeyRecord {
        material_valid_to: T,
        ..pending_delete(1, T)
    };
    // Rotation due and material expired: expiry.
    let both = KeyRecord {
        material_valid_to: T,
        ..rotating(2, T)
    };
    let reg = registry_with(vec![doomed.clone(), both.clone()]);
    assert_eq!(
        due_work(&reg, T, 64),
        vec![
            work(&doomed, DueAction::Delete),
            work(&both, DueAction::ExpireMaterial)
        ]
    );
    // Before its deletion date, the doomed key's expired material is what is due.
    let later_delete = KeyRecord {
        deletion_date: T + DAY,
        ..doomed.clone()
    };
    let reg = registry_with(vec![later_delete.clone()]);
    assert_eq!(
        due_work(&reg, T, 64),
        vec![work(&later_delete, DueAction::ExpireMaterial)]
    );
}

#[test]
fn at_most_max_are_returned_in_key_order() {
    let keys: Vec<KeyRecord> = [8u8, 0, 6, 2, 4]
        .into_iter()
        .map(|id| pending_delete(id, T))
        .collect();
    let reg = registry_with(keys);
    let ids = |w: Vec<DueWork>| w.into_iter().map(|w| w.key_id).collect::<Vec<_>>();
    let all = ids(due_work(&reg, T, 64));
    let expected: Vec<String> = [0u8, 2, 4, 6, 8].iter().map(|&i| plain(i).key_id).collect();
    assert_eq!(all, expected);
    assert_eq!(ids(due_work(&reg, T, 3)), expected[..3].to_vec());
    assert_eq!(ids(due_work(&reg, T, 5)), expected);
    assert_eq!(due_work(&reg, T, 0), vec![]);
    // Keys not due do not use up the cap.
    let mut mixed = vec![plain(10), plain(12)];
    mixed.extend([pending_delete(14, T), pending_delete(16, T)]);
    let reg = registry_with(mixed);
    assert_eq!(
        ids(due_work(&reg, T, 2)),
        vec![plain(14).key_id, plain(16).key_id]
    );
}

#[test]
fn actions_name_themselves_for_logs() {
    assert_eq!(DueAction::Delete.what(), "deletion");
    assert_eq!(DueAction::ExpireMaterial.what(), "material expiry");
    assert_eq!(rotate(2).what(), "rotation");
}
