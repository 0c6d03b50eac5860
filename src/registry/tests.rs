use proptest::prelude::*;

use super::*;

fn env(id: u8, command: Command) -> Envelope {
    Envelope {
        request_id: RequestId([id; 16]),
        issued_at_ms: 1_700_000_000_000,
        command,
    }
}

fn arb_command() -> impl Strategy<Value = Command> {
    let name =
        prop::sample::select(vec!["a", "b", "c", "d", "", "settings/quota"]).prop_map(String::from);
    let value = prop::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        (name.clone(), value.clone()).prop_map(|(name, value)| Command::PutRecord { name, value }),
        prop::collection::vec((name.clone(), value), 0..3)
            .prop_map(|records| Command::PutRecords { records }),
        name.prop_map(|name| Command::DeleteRecord { name }),
    ]
}

/// A random command sequence; request ids are drawn from a small range so duplicates occur.
fn arb_log() -> impl Strategy<Value = Vec<Envelope>> {
    prop::collection::vec(
        (0u8..12, arb_command()).prop_map(|(id, c)| env(id, c)),
        0..60,
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
