//! Multi-region (replica) keys.

use super::*;

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
