//! Identities, policies, bindings and product-managed keys as apply keeps them.

use super::*;
use iam::{Effect, Identity, IdentityKind, Policy, Principal, Statement};

struct Fixture {
    reg: Registry,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        let mut f = Fixture {
            reg: Registry::default(),
            index: 0,
        };
        f.ok(Command::CreateAccount {
            account: account::Account {
                uin: 1,
                app_id: 10,
                name: "a".into(),
                created_at: 1,
            },
        });
        f
    }

    fn run(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let e = Envelope {
            request_id: RequestId::random(),
            issued_at_ms: 1_700_000_000_000,
            command,
        };
        let (outcome, _) = self.reg.apply(self.index, &e).unwrap();
        outcome
    }

    fn ok(&mut self, command: Command) {
        let out = self.run(command);
        assert!(matches!(out, Outcome::Applied { .. }), "{out:?}");
    }

    fn refused(&mut self, command: Command) -> RegistryError {
        let before = self.reg.clone();
        match self.run(command) {
            Outcome::Rejected(e) => {
                // Nothing but the dedup entry changed.
                assert_eq!(before.iam, self.reg.iam);
                assert_eq!(before.accounts, self.reg.accounts);
                assert_eq!(before.keys, self.reg.keys);
                e
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

fn user(name: &str) -> Command {
    Command::CreateIdentity {
        identity: Identity {
            uin: 1,
            kind: IdentityKind::User,
            name: name.into(),
            service: None,
            policies: Default::default(),
            created_at: 1,
        },
    }
}

fn credential(id: &str, name: &str) -> Command {
    Command::CreateIdentityCredential {
        credential: account::Credential {
            secret_id: id.into(),
            uin: 1,
            wrapped_secret_key: vec![1],
            created_at: 1,
        },
        kind: IdentityKind::User,
        name: name.into(),
    }
}

fn policy(name: &str, replace: bool) -> Command {
    Command::PutPolicy {
        policy: Policy {
            uin: 1,
            name: name.into(),
            description: String::new(),
            statements: vec![Statement {
                effect: Effect::Allow,
                actions: vec!["kms:*".into()],
                resources: vec!["*".into()],
                conditions: vec![],
            }],
            text: "{}".into(),
            created_at: 5,
            updated_at: 5,
        },
        replace,
    }
}

fn attach(name: &str, policy: &str, attach: bool) -> Command {
    Command::AttachPolicy {
        uin: 1,
        kind: IdentityKind::User,
        name: name.into(),
        policy: policy.into(),
        attach,
    }
}

#[test]
fn identities_credentials_and_policies_live_and_die_together() {
    let mut f = Fixture::new();
    f.ok(user("alice"));
    assert_eq!(f.refused(user("alice")), RegistryError::IdentityExists);
    assert_eq!(
        f.refused(user("bad name")),
        RegistryError::InvalidIdentityName
    );
    assert_eq!(
        f.refused(credential("AKIDx", "nobody")),
        RegistryError::IdentityNotFound
    );
    f.ok(credential("AKIDa", "alice"));
    assert_eq!(
        f.reg.iam().principal("AKIDa"),
        Principal::Identity {
            kind: IdentityKind::User,
            name: "alice".into()
        }
    );
    assert_eq!(f.reg.iam().principal("AKIDroot"), Principal::Root);

    assert_eq!(
        f.refused(attach("alice", "p", true)),
        RegistryError::PolicyNotFound
    );
    f.ok(policy("p", false));
    assert_eq!(f.refused(policy("p", false)), RegistryError::PolicyExists);
    assert_eq!(f.refused(policy("q", true)), RegistryError::PolicyNotFound);
    f.ok(policy("p", true));
    f.ok(attach("alice", "p", true));
    assert!(f
        .reg
        .iam()
        .identity(1, IdentityKind::User, "alice")
        .unwrap()
        .policies
        .contains("p"));

    // Deleting a policy detaches it.
    f.ok(Command::DeletePolicy {
        uin: 1,
        name: "p".into(),
    });
    assert!(f
        .reg
        .iam()
        .identity(1, IdentityKind::User, "alice")
        .unwrap()
        .policies
        .is_empty());
    assert_eq!(
        f.refused(attach("alice", "p", false)),
        RegistryError::PolicyNotAttached
    );

    // Deleting the user revokes its credentials and bindings.
    f.ok(credential("AKIDb", "alice"));
    f.ok(Command::DeleteIdentity {
        uin: 1,
        kind: IdentityKind::User,
        name: "alice".into(),
    });
    for id in ["AKIDa", "AKIDb"] {
        assert!(f.reg.accounts().credential(id).is_none());
        assert_eq!(f.reg.iam().principal(id), Principal::Root);
    }
    assert_eq!(f.reg.iam().bindings().count(), 0);

    // Revoking one credential removes its binding.
    f.ok(user("bob"));
    f.ok(credential("AKIDc", "bob"));
    f.ok(Command::RevokeCredential {
        secret_id: "AKIDc".into(),
    });
    assert_eq!(f.reg.iam().bindings().count(), 0);

    // The whole state survives a dump and load.
    let loaded = Registry::load(f.reg.dump().unwrap()).unwrap();
    assert_eq!(loaded.iam, f.reg.iam);
}

#[test]
fn a_product_key_cannot_be_disabled_or_scheduled_for_deletion() {
    let mut f = Fixture::new();
    let k = key_record(0, 1, "prod".into());
    f.ok(Command::CreateProductKey {
        key: Box::new(k.clone()),
        cmk_limit: 10,
        product: "cbs".into(),
    });
    f.ok(Command::CreateKey {
        key: Box::new(key_record(2, 1, "own".into())),
        cmk_limit: 10,
    });
    assert_eq!(
        f.reg.iam().product_of("ap-guangzhou", 1, &k.key_id),
        Some("cbs")
    );
    let op = |op, ids: Vec<String>| Command::KeyOp {
        region: "ap-guangzhou".into(),
        uin: 1,
        key_ids: ids,
        op,
    };
    let own = key_record(2, 1, "own".into()).key_id;
    for o in [
        key::KeyOp::Disable,
        key::KeyOp::ScheduleDeletion { pending_days: 7 },
    ] {
        assert_eq!(
            f.refused(op(o.clone(), vec![k.key_id.clone()])),
            RegistryError::NotUserCreatedCmk
        );
        // All or nothing with the user's own key in the same call.
        assert_eq!(
            f.refused(op(o, vec![own.clone(), k.key_id.clone()])),
            RegistryError::NotUserCreatedCmk
        );
    }
    f.ok(op(
        key::KeyOp::EnableRotation { rotate_days: 30 },
        vec![k.key_id.clone()],
    ));
    f.ok(op(key::KeyOp::Disable, vec![own]));
}
