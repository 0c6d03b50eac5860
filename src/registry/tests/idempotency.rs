//! The idempotency table and all-or-nothing rejections.

use super::*;

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
