//! Encoding failures: a refusal of their own (`RegistryError::Encoding`), never `ValueTooLarge`,
//! and never a half-applied command. The registry's types cannot fail to encode (and the codec
//! has no size limit), so these tests inject the failure with `fault::fail_encode`.

use super::*;

const NOW: u64 = 2_000_000_000;
const DAY: u64 = 86_400;

/// Account 1 with keys 0 (a primary, replicated to ap-shanghai and ap-singapore) and 2, both
/// Enabled in ap-guangzhou.
struct Fixture {
    reg: Registry,
    index: u64,
    primary: String,
    single: String,
}

impl Fixture {
    fn new() -> Self {
        let mut f = Fixture {
            reg: Registry::default(),
            index: 0,
            primary: key_record(0, 1, "p".into()).key_id,
            single: key_record(2, 1, "q".into()).key_id,
        };
        f.applied(Command::CreateAccount {
            account: account::Account {
                uin: 1,
                app_id: 10,
                name: "a".into(),
                created_at: 1,
            },
        });
        for (id, alias) in [(0, "p"), (2, "q")] {
            f.applied(Command::CreateKey {
                key: Box::new(key_record(id, 1, alias.into())),
                cmk_limit: 10,
            });
        }
        f.applied(Command::ReplicateKey {
            uin: 1,
            key_id: f.primary.clone(),
            source_region: "ap-guangzhou".into(),
            replicas: vec![spec("ap-shanghai", "s"), spec("ap-singapore", "g")],
            cmk_limit: 10,
        });
        f
    }

    fn apply_at(&mut self, now_s: u64, command: Command) -> (Outcome, Vec<Change>) {
        self.index += 1;
        let e = Envelope {
            request_id: RequestId::random(),
            issued_at_ms: now_s * 1000,
            command,
        };
        self.reg.apply(self.index, &e).unwrap()
    }

    /// Applies `command` at `NOW` and asserts it was applied.
    fn applied(&mut self, command: Command) {
        let (o, _) = self.apply_at(NOW, command);
        assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    }

    /// Applies `command` at `now_s` with the encoding of `what` failing after `after` successful
    /// ones, and checks that it was refused for that and changed nothing but its dedup entry.
    fn refused(&mut self, now_s: u64, what: &'static str, after: usize, command: Command) {
        let before = self.reg.clone();
        let (o, changes) = {
            let _fault = fault::fail_encode(what, after);
            self.apply_at(now_s, command)
        };
        assert_eq!(o, Outcome::Rejected(RegistryError::Encoding(what.into())));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(
            matches!(&changes[0], Change::Put(k, _) if k.starts_with(dedup::PREFIX)),
            "{changes:?}"
        );
        assert_eq!(self.reg.records, before.records);
        assert_eq!(self.reg.accounts, before.accounts);
        assert_eq!(self.reg.keys, before.keys);
        assert_eq!(self.reg.replicas, before.replicas);
        assert_eq!(self.reg.dedup.len(), before.dedup.len() + 1);
    }

    fn key(&self, region: &str, id: &str) -> Option<&key::KeyRecord> {
        self.reg.keys().get(region, 1, id)
    }
}

fn spec(region: &str, alias: &str) -> replica::ReplicaSpec {
    replica::ReplicaSpec {
        region: region.into(),
        alias: alias.into(),
        description: String::new(),
        tags: vec![],
    }
}

fn op(region: &str, key_ids: &[&String], op: key::KeyOp) -> Command {
    Command::KeyOp {
        region: region.into(),
        uin: 1,
        key_ids: key_ids.iter().map(|s| s.to_string()).collect(),
        op,
    }
}

#[test]
fn an_encoding_failure_is_its_own_refusal_and_is_remembered() {
    let mut f = Fixture::new();
    let put = |v: u8| Command::PutRecord {
        name: "x".into(),
        value: vec![v],
    };
    f.refused(NOW, "record", 0, put(1));
    assert!(f.reg.records().get("x").is_none());

    // Deterministic: two replicas refusing the same entry the same way end up identical.
    let mut a = f.reg.clone();
    let mut b = f.reg.clone();
    let e = env(200, put(2));
    for r in [&mut a, &mut b] {
        let _fault = fault::fail_encode("record", 0);
        let (o, _) = r.apply(100, &e).unwrap();
        assert_eq!(
            o,
            Outcome::Rejected(RegistryError::Encoding("record".into()))
        );
    }
    assert_eq!(a.digest().unwrap(), b.digest().unwrap());
    // A retry of the refused request gets the same answer, even once encoding would work.
    let (o, changes) = a.apply(101, &e).unwrap();
    assert_eq!(
        o,
        Outcome::Rejected(RegistryError::Encoding("record".into()))
    );
    assert!(changes.is_empty());
    assert!(a.records().get("x").is_none());

    // A new request without the fault goes through.
    f.applied(put(3));
    assert_eq!(f.reg.records().get("x"), Some(&[3u8][..]));
}

#[test]
fn a_batch_failing_midway_changes_nothing() {
    let mut f = Fixture::new();
    let records = Command::PutRecords {
        records: vec![
            ("a".into(), vec![1]),
            ("b".into(), vec![2]),
            ("c".into(), vec![3]),
        ],
    };
    f.refused(NOW, "record", 2, records);
    assert!(f.reg.records().is_empty());

    let (p, s) = (f.primary.clone(), f.single.clone());
    f.refused(
        NOW,
        "key",
        1,
        op("ap-guangzhou", &[&s, &p], key::KeyOp::Disable),
    );
    for id in [&p, &s] {
        assert_eq!(
            f.key("ap-guangzhou", id).unwrap().state,
            key::KeyState::Enabled
        );
    }
}

#[test]
fn account_table_mutations_refuse_cleanly() {
    let mut f = Fixture::new();
    f.refused(
        NOW,
        "root key",
        0,
        Command::InstallRootKey {
            sealed: vec![1, 2, 3],
        },
    );
    assert!(f.reg.root_keys().current().is_none());
    f.refused(
        NOW,
        "account",
        0,
        Command::CreateAccount {
            account: account::Account {
                uin: 2,
                app_id: 20,
                name: "b".into(),
                created_at: 1,
            },
        },
    );
    assert!(f.reg.accounts().account(2).is_none());
    f.refused(
        NOW,
        "credential",
        0,
        Command::CreateCredential {
            credential: account::Credential {
                secret_id: "AKID1".into(),
                uin: 1,
                wrapped_secret_key: vec![9; 8],
                created_at: 1,
            },
        },
    );
    assert!(f.reg.accounts().credential("AKID1").is_none());
}

#[test]
fn a_failed_create_does_not_reserve_the_alias_or_the_quota() {
    let mut f = Fixture::new();
    let create = |limit| Command::CreateKey {
        key: Box::new(key_record(4, 1, "c".into())),
        cmk_limit: limit,
    };
    let count = f.reg.keys().count("ap-guangzhou", 1);
    f.refused(NOW, "key", 0, create(count as u32 + 1));
    assert_eq!(f.reg.keys().count("ap-guangzhou", 1), count);
    // Neither the alias nor the quota slot was taken by the refused create.
    f.applied(create(count as u32 + 1));
}

#[test]
fn a_failed_mirror_leaves_the_primary_and_every_replica_unrotated() {
    let mut f = Fixture::new();
    let p = f.primary.clone();
    let rotate = || {
        op(
            "ap-guangzhou",
            &[&p],
            key::KeyOp::Rotate {
                material: key::MaterialVersion {
                    version: 2,
                    created_at: NOW,
                    wrapped: vec![2; 8],
                },
                manual: true,
                min_manual_interval: 0,
            },
        )
    };
    // The primary's record encodes, then the first replica's (or the second's) copy fails.
    for after in [1, 2] {
        f.refused(NOW, "key", after, rotate());
        for region in ["ap-guangzhou", "ap-shanghai", "ap-singapore"] {
            assert_eq!(f.key(region, &p).unwrap().versions.len(), 1, "{region}");
        }
    }
    f.applied(rotate());
    for region in ["ap-guangzhou", "ap-shanghai", "ap-singapore"] {
        assert_eq!(f.key(region, &p).unwrap().versions.len(), 2, "{region}");
    }
}

#[test]
fn a_failed_link_creates_no_replica() {
    let mut f = Fixture::new();
    let s = f.single.clone();
    let replicate = || Command::ReplicateKey {
        uin: 1,
        key_id: s.clone(),
        source_region: "ap-guangzhou".into(),
        replicas: vec![spec("ap-shanghai", "t"), spec("ap-beijing", "t")],
        cmk_limit: 10,
    };
    f.refused(NOW, "replica set", 0, replicate());
    f.refused(NOW, "key", 1, replicate());
    assert!(f.key("ap-shanghai", &s).is_none());
    assert!(f.key("ap-beijing", &s).is_none());
    assert!(f.reg.replicas().get(1, &s).is_none());
    f.applied(replicate());
    assert!(f.key("ap-beijing", &s).is_some());
    assert_eq!(
        f.reg.replicas().get(1, &s).unwrap().replicas,
        vec!["ap-beijing", "ap-shanghai"]
    );
}

#[test]
fn a_failed_unlink_keeps_the_replica() {
    let mut f = Fixture::new();
    let p = f.primary.clone();
    f.applied(op("ap-shanghai", &[&p], key::KeyOp::Disable));
    f.applied(op(
        "ap-shanghai",
        &[&p],
        key::KeyOp::ScheduleDeletion { pending_days: 7 },
    ));
    let later = NOW + 8 * DAY;
    let delete = || op("ap-shanghai", &[&p], key::KeyOp::DeleteDue);
    f.refused(later, "replica set", 0, delete());
    assert!(f.key("ap-shanghai", &p).is_some());
    assert!(matches!(
        f.reg.replicas().role("ap-shanghai", 1, &p),
        replica::Role::Replica(_)
    ));
    let (o, _) = f.apply_at(later, delete());
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    assert!(f.key("ap-shanghai", &p).is_none());
    assert_eq!(
        f.reg.replicas().get(1, &p).unwrap().replicas,
        vec!["ap-singapore"]
    );
}

#[test]
fn a_dedup_entry_that_cannot_be_encoded_fails_apply_and_changes_nothing() {
    let mut reg = Registry::default();
    let put = |id, name: &str| {
        env(
            id,
            Command::PutRecord {
                name: name.into(),
                value: vec![id],
            },
        )
    };
    reg.apply(1, &put(1, "old")).unwrap();
    let before = reg.clone();
    // At this index the first entry leaves the window; the failure must not evict it either.
    let index = 1 + dedup::WINDOW + 1;
    let e = put(2, "new");
    {
        let _fault = fault::fail_encode("dedup entry", 0);
        assert!(matches!(
            reg.apply(index, &e),
            Err(CodecError::Encode {
                what: "dedup entry",
                ..
            })
        ));
    }
    assert_eq!(reg, before);
    let (o, _) = reg.apply(index, &e).unwrap();
    assert_eq!(o, Outcome::Applied { index });
    assert!(reg.dedup().get(&RequestId([1; 16])).is_none());
    assert_eq!(reg.records().get("new"), Some(&[2u8][..]));
}
