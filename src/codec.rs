//! Versioned binary encoding shared by every persisted or replicated record.
//!
//! Every record starts with one format-version byte, then a bincode 2 (serde, standard config)
//! payload. Readers reject versions they do not know instead of guessing, so a newer record on an
//! older binary is a clear error, never silent misreading.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version written today for every record kind.
pub const FORMAT_V1: u8 = 1;

/// A record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error(
        "unsupported format version {found} for {what} (this build reads version {FORMAT_V1})"
    )]
    Version { what: &'static str, found: u8 },
    #[error("malformed {what}: {error}")]
    Decode {
        what: &'static str,
        error: bincode::error::DecodeError,
    },
    #[error("cannot encode {what}: {error}")]
    Encode {
        what: &'static str,
        error: bincode::error::EncodeError,
    },
    #[error("trailing bytes after {what}")]
    Trailing { what: &'static str },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` as `[FORMAT_V1] ++ bincode(value)`.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_V1];
    let body = bincode::serde::encode_to_vec(value, config())
        .map_err(|error| CodecError::Encode { what, error })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// bincode sizes a string's buffer by its length prefix before reading the bytes, so without a
/// limit a prefix claiming 4 GiB allocates 4 GiB (and one claiming 2^64 − 1 panics). Its limit
/// bounds the bytes a decode may claim: a string claims its length, a primitive its in-memory
/// size (at most 16 bytes for one encoded byte), so a valid record never claims more than 16
/// times its length. The limit is a compile-time constant: the smallest of a few tiers above
/// that bound is used, and a lying prefix can allocate at most that tier (≤ 256 × the input).
fn decode_bounded<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    let claim = body.len().saturating_mul(16);
    macro_rules! tiers {
        ($($limit:expr),+) => {
            $(
                if claim <= $limit {
                    return bincode::serde::decode_from_slice(body, config().with_limit::<{ $limit }>());
                }
            )+
        };
    }
    tiers!(1 << 16, 1 << 20, 1 << 24, 1 << 28, 1 << 32, 1 << 36);
    bincode::serde::decode_from_slice(body, config().with_limit::<{ 1 << 40 }>())
}

/// Decodes a record written by [`encode`], checking its version byte and that nothing trails it.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_V1 {
        return Err(CodecError::Version {
            what,
            found: version,
        });
    }
    let (value, used) = decode_bounded(body).map_err(|error| CodecError::Decode { what, error })?;
    if used != body.len() {
        return Err(CodecError::Trailing { what });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let v = (7u64, "seven".to_string(), vec![1u8, 2, 3]);
        let bytes = encode("tuple", &v).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        let back: (u64, String, Vec<u8>) = decode("tuple", &bytes).unwrap();
        assert_eq!(back, v);

        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>("tuple", &wrong),
            Err(CodecError::Version { found: 9, .. })
        ));
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>("tuple", &long),
            Err(CodecError::Trailing { .. })
        ));
        assert!(matches!(decode::<u64>("x", &[]), Err(CodecError::Empty)));
    }
}
