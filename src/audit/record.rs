//! One record: the caller's [`Event`], its place in the chain, its hash, and the JSON line it
//! is stored as.

use std::io::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditError;
use crate::codec;

/// The record format version written in every line's `v`.
pub const FORMAT_VERSION: u64 = 1;

/// The hash's domain separation prefix.
const DOMAIN: &[u8] = b"raftkms-audit-v1\0";

/// `prev` of the first record.
pub(super) const ZERO_HASH: [u8; 32] = [0; 32];

/// What happened to one request, as the caller supplies it.
///
/// Never anything secret: this type has no field for plaintexts, data keys, the inputs of
/// signatures or secret keys, and must never get one. Identifiers (key ids, the credential's
/// SecretId, the request id) are not secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock milliseconds when the request ended.
    pub at_ms: u64,
    /// The node that served the request ([`super::AuditLog::append`] stores its own node id).
    pub node_id: u64,
    pub region: String,
    /// The account, if authentication got that far.
    pub uin: Option<u64>,
    /// `"root"`, `"user/<name>"` or `"role/<name>"`.
    pub principal: Option<String>,
    /// The credential's SecretId (an identifier, not the secret key).
    pub secret_id: Option<String>,
    /// The client's address, `"ip:port"`.
    pub source: Option<String>,
    /// The API dialect: `"tencent"` (later `"tencent-v2"`, `"huawei"`).
    pub dialect: String,
    /// `"kms:Encrypt"`, or the dialect's action name if the request was refused before the core.
    pub action: String,
    pub key_ids: Vec<String>,
    pub request_id: String,
    /// `"Success"` or the error code answered.
    pub result: String,
    /// `"linearizable"` or `"stale"`.
    pub consistency: Option<String>,
    pub latency_us: u64,
    /// The request proposed (or tried to propose) a write.
    pub write: bool,
}

/// A record as stored: its place in the chain and the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    /// The previous record's hash (zeros for seq 1).
    pub prev: [u8; 32],
    /// This record's hash as stored (compare with [`StoredRecord::computed_hash`]).
    pub hash: [u8; 32],
    pub event: Event,
}

impl StoredRecord {
    /// The hash this record's seq, prev and event give.
    pub fn computed_hash(&self) -> Result<[u8; 32], AuditError> {
        record_hash(self.seq, &self.prev, &self.event)
    }

    /// The record's JSON line, newline included: the bytes the trail stores.
    pub fn to_line(&self) -> Result<Vec<u8>, AuditError> {
        let json = event_json(&self.event)?;
        let mut out = Vec::with_capacity(json.len() + 160);
        write_line(&mut out, self.seq, &self.prev, &self.hash, &json);
        Ok(out)
    }
}

/// Serializes as the stored line's object (`v`, `seq`, `prev`, `hash`, then the event's fields).
impl Serialize for StoredRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            v: u64,
            seq: u64,
            prev: String,
            hash: String,
            #[serde(flatten)]
            event: &'a Event,
        }
        Out {
            v: FORMAT_VERSION,
            seq: self.seq,
            prev: hex::encode(self.prev),
            hash: hex::encode(self.hash),
            event: &self.event,
        }
        .serialize(s)
    }
}

/// The binary encoding the hash covers.
pub(super) fn encode_event(event: &Event) -> Result<Vec<u8>, AuditError> {
    codec::encode("audit event", event)
        .map_err(|e| AuditError::Unavailable(format!("cannot encode an audit event: {e}")))
}

/// The event as a JSON object (it always starts with `{` and has fields).
pub(super) fn event_json(event: &Event) -> Result<Vec<u8>, AuditError> {
    serde_json::to_vec(event)
        .map_err(|e| AuditError::Unavailable(format!("cannot encode an audit event: {e}")))
}

/// `SHA-256(DOMAIN ‖ seq BE ‖ prev ‖ encoded)`.
pub(super) fn chain_hash(seq: u64, prev: &[u8; 32], encoded_event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(encoded_event);
    h.finalize().into()
}

/// The hash of the record `seq` holding `event` after a record whose hash is `prev`.
pub fn record_hash(seq: u64, prev: &[u8; 32], event: &Event) -> Result<[u8; 32], AuditError> {
    Ok(chain_hash(seq, prev, &encode_event(event)?))
}

/// Appends the record's line to `out`: the chain fields, then the fields of `event_json` (the
/// event's JSON object, spliced after its opening brace), then a newline.
pub(super) fn write_line(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &[u8; 32],
    hash: &[u8; 32],
    event_json: &[u8],
) {
    let mut hex_buf = [0u8; 64];
    out.extend_from_slice(b"{\"v\":1,\"seq\":");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{seq}");
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(hex_of(prev, &mut hex_buf));
    out.extend_from_slice(b"\",\"hash\":\"");
    out.extend_from_slice(hex_of(hash, &mut hex_buf));
    out.extend_from_slice(b"\",");
    out.extend_from_slice(event_json.strip_prefix(b"{").unwrap_or(event_json));
    out.push(b'\n');
}

fn hex_of<'a>(bytes: &[u8; 32], buf: &'a mut [u8; 64]) -> &'a [u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    buf
}

/// Why a line is not a record.
#[derive(Debug)]
pub(super) enum LineError {
    /// A record of another format version.
    Version(u64),
    /// Not a record.
    Malformed(String),
}

/// A stored line, field by field (the event's fields spelled out, so unknown fields are
/// refused: a field added to a line would not be covered by its hash).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    v: u64,
    seq: u64,
    prev: &'a str,
    hash: &'a str,
    at_ms: u64,
    node_id: u64,
    region: String,
    uin: Option<u64>,
    principal: Option<String>,
    secret_id: Option<String>,
    source: Option<String>,
    dialect: String,
    action: String,
    key_ids: Vec<String>,
    request_id: String,
    result: String,
    consistency: Option<String>,
    latency_us: u64,
    write: bool,
}

/// Only the version, to tell a record of another version from garbage.
#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

/// Parses one line (without its newline).
pub(super) fn parse_line(line: &[u8]) -> Result<StoredRecord, LineError> {
    let l: LineIn<'_> = match serde_json::from_slice(line) {
        Ok(l) => l,
        Err(e) => {
            return Err(match serde_json::from_slice::<VersionOnly>(line) {
                Ok(VersionOnly { v }) if v != FORMAT_VERSION => LineError::Version(v),
                _ => LineError::Malformed(format!("not an audit record: {e}")),
            })
        }
    };
    if l.v != FORMAT_VERSION {
        return Err(LineError::Version(l.v));
    }
    let hash32 = |what: &str, s: &str| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map(|()| out)
            .map_err(|e| LineError::Malformed(format!("`{what}` is not 64 hex digits: {e}")))
    };
    Ok(StoredRecord {
        seq: l.seq,
        prev: hash32("prev", l.prev)?,
        hash: hash32("hash", l.hash)?,
        event: Event {
            at_ms: l.at_ms,
            node_id: l.node_id,
            region: l.region,
            uin: l.uin,
            principal: l.principal,
            secret_id: l.secret_id,
            source: l.source,
            dialect: l.dialect,
            action: l.action,
            key_ids: l.key_ids,
            request_id: l.request_id,
            result: l.result,
            consistency: l.consistency,
            latency_us: l.latency_us,
            write: l.write,
        },
    })
}
