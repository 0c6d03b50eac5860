//! Unit and property tests of the registry, by topic. Shared builders live here.

use super::*;

mod data_keys;
mod encoding;
mod features;
mod idempotency;
mod identities;
mod lifecycle;
mod model;
mod replicas;
mod root_versions;
mod scheduled_work;

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
            wrapped: root_versions::wrapped(1, id),
        }],
        import: None,
        material_valid_to: 0,
        material_fingerprint: vec![],
    }
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
