//! Key lifecycle: state rules, rotation, quota.

use super::*;

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
