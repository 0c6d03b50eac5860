//! The cluster feature level: absent (and so invisible to the first release) until raised; it
//! only rises; the gate's table of which command needs which level.

use super::*;
use crate::registry::features::{BASE_LEVEL, FEATURE_LEVEL, KEY};

#[test]
fn a_registry_never_raised_stores_nothing_for_its_level() {
    let mut reg = Registry::default();
    assert_eq!(reg.feature_level(), BASE_LEVEL);
    reg.apply(
        1,
        &env(
            1,
            Command::PutRecord {
                name: "a".into(),
                value: vec![1],
            },
        ),
    )
    .unwrap();
    // What the first release dumps, snapshots and digests: no row of a table it does not know.
    assert!(reg
        .dump()
        .unwrap()
        .iter()
        .all(|(k, _)| !k.starts_with(b"F/")));
}

#[test]
fn the_level_rises_persists_and_never_falls() {
    let mut reg = Registry::default();
    let (outcome, changes) = reg
        .apply(1, &env(1, Command::SetFeatureLevel { level: 2 }))
        .unwrap();
    assert_eq!(outcome, Outcome::Applied { index: 1 });
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::Put(k, _) if k.as_slice() == KEY)));
    assert_eq!(reg.feature_level(), 2);
    let reloaded = Registry::load(reg.dump().unwrap()).unwrap();
    assert_eq!(reloaded.feature_level(), 2);
    assert_eq!(reloaded, reg);

    for (id, level) in [(2u8, 2u32), (3, 1), (4, 0)] {
        let before = reg.clone();
        let (outcome, _) = reg
            .apply(u64::from(id), &env(id, Command::SetFeatureLevel { level }))
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::Rejected(RegistryError::FeatureLevelNotRaised { current: 2 }),
            "raise to {level}"
        );
        assert_eq!(reg.feature_level(), before.feature_level());
    }
    // A level beyond this build is applied like any other (apply is the same on every build;
    // the state machine stops a node too old for it before it applies the entry).
    reg.apply(
        9,
        &env(
            9,
            Command::SetFeatureLevel {
                level: FEATURE_LEVEL + 5,
            },
        ),
    )
    .unwrap();
    assert_eq!(reg.feature_level(), FEATURE_LEVEL + 5);
}

#[test]
fn only_commands_added_after_the_first_release_need_a_higher_level() {
    assert_eq!(
        Command::SetFeatureLevel { level: 2 }.required_level(),
        2,
        "added in feature level 2"
    );
    let put = Command::PutRecord {
        name: "a".into(),
        value: vec![],
    };
    assert_eq!(put.required_level(), BASE_LEVEL);
    let batch = |commands: Vec<Command>| Command::Batch {
        writes: commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| env(i as u8, c))
            .collect(),
    };
    assert_eq!(batch(vec![put.clone()]).required_level(), BASE_LEVEL);
    assert_eq!(
        batch(vec![put, Command::SetFeatureLevel { level: 2 }]).required_level(),
        2
    );
}

/// Cloud-resource bindings (feature level 2): a bound key refuses the operations that would take
/// it away from the product, binding twice changes nothing, unbinding needs the binding, and an
/// imported key's expiry is cancelled.
#[test]
fn a_bound_key_cannot_be_taken_away_from_its_product() {
    use crate::registry::cloud_binding::CloudBinding;
    let mut reg = Registry::default();
    reg.apply(
        1,
        &env(
            1,
            Command::CreateAccount {
                account: account::Account {
                    uin: 1,
                    app_id: 1,
                    name: "a".into(),
                    created_at: 1,
                },
            },
        ),
    )
    .unwrap();
    // Key 1 is EXTERNAL (odd id): give it material that expires.
    let mut k = key_record(1, 1, "k".into());
    k.material_valid_to = 2_000_000_000;
    reg.apply(
        2,
        &env(
            2,
            Command::CreateKey {
                key: Box::new(k.clone()),
                cmk_limit: 10,
            },
        ),
    )
    .unwrap();
    let binding = CloudBinding {
        region: k.region.clone(),
        uin: 1,
        key_id: k.key_id.clone(),
        product_id: "cvm".into(),
        resource_id: "ins-1".into(),
    };
    let bind = Command::BindCloudResource {
        binding: binding.clone(),
    };
    assert_eq!(
        reg.apply(3, &env(3, bind.clone())).unwrap().0,
        Outcome::Applied { index: 3 }
    );
    assert_eq!(
        reg.keys()
            .get(&k.region, 1, &k.key_id)
            .unwrap()
            .material_valid_to,
        0,
        "the expiry is cancelled"
    );
    let (again, changes) = reg.apply(4, &env(4, bind)).unwrap();
    assert_eq!(again, Outcome::Applied { index: 4 });
    assert!(
        changes
            .iter()
            .all(|c| !matches!(c, Change::Put(k, _) if k.starts_with(b"b/"))),
        "binding twice stores nothing new"
    );
    assert_eq!(reg.cloud_bindings().len(), 1);
    // Nothing takes it out of use, and nothing brings an expiry back.
    for (i, op) in [
        key::KeyOp::Disable,
        key::KeyOp::Archive,
        key::KeyOp::ScheduleDeletion { pending_days: 7 },
        key::KeyOp::DeleteImportedMaterial,
        key::KeyOp::ExpireMaterial,
        key::KeyOp::ImportMaterial {
            token: "t".into(),
            material: k.versions[0].clone(),
            fingerprint: vec![0; 32],
            valid_to: 2_000_000_000,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let cmd = Command::KeyOp {
            region: k.region.clone(),
            uin: 1,
            key_ids: vec![k.key_id.clone()],
            op,
        };
        assert_eq!(
            reg.apply(10 + i as u64, &env(10 + i as u8, cmd)).unwrap().0,
            Outcome::Rejected(RegistryError::CmkUsedByCloudProduct)
        );
    }
    assert!(
        crate::registry::due::due_work(&reg, 3_000_000_000, 10).is_empty(),
        "a bound key has no expiry due"
    );
    // Unbinding names an existing key first.
    let mut elsewhere = binding.clone();
    elsewhere.key_id = "00000000-0000-0000-0000-000000000099".into();
    assert_eq!(
        reg.apply(
            19,
            &env(19, Command::UnbindCloudResource { binding: elsewhere })
        )
        .unwrap()
        .0,
        Outcome::Rejected(RegistryError::KeyNotFound)
    );
    let unbind = Command::UnbindCloudResource { binding };
    assert_eq!(
        reg.apply(20, &env(20, unbind.clone())).unwrap().0,
        Outcome::Applied { index: 20 }
    );
    assert_eq!(
        reg.apply(21, &env(21, unbind)).unwrap().0,
        Outcome::Rejected(RegistryError::CloudBindingNotFound)
    );
    let disable = Command::KeyOp {
        region: k.region.clone(),
        uin: 1,
        key_ids: vec![k.key_id.clone()],
        op: key::KeyOp::Disable,
    };
    assert_eq!(
        reg.apply(22, &env(22, disable)).unwrap().0,
        Outcome::Applied { index: 22 }
    );
    assert_eq!(Registry::load(reg.dump().unwrap()).unwrap(), reg);
}
