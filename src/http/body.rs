//! Reading a request body with a bound, shared by the dialects (each maps the failure to its
//! own error).

use axum::body::{Body, Bytes};

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;
/// How much of an oversized body is still read, so the client receives the error answer
/// instead of a broken connection.
const DRAIN_LIMIT: usize = 16 << 20;

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("cannot read the request body: {0}")]
    Read(String),
    #[error("the request body exceeds {MAX_BODY} bytes")]
    TooLarge,
}

/// Reads the body, keeping at most [`MAX_BODY`] bytes.
pub async fn read_bounded(body: Body) -> Result<Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        total += chunk.len();
        if total <= MAX_BODY {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    Ok(kept.into())
}
