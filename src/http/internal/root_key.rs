//! The admin endpoints of root-key rotation: the installed versions, a new version, and the
//! retirement of an old one. The re-wrap between them is the leader's
//! ([`crate::scheduler::rewrap`]).

use axum::extract::State;
use axum::response::Response;
use axum::Json;

use super::admin::{apply, json_or_error, read_linearizable};
use super::Internal;
use crate::config::Consistency;
use crate::raft::error::ClusterError;
use crate::registry::{Command, Registry};
use crate::wire::{RetireRootKeyRequest, RootKeyStatus, RootKeyVersionInfo, RotateRootKeyRequest};

/// The root-key versions of `registry` and what each protects.
pub(super) fn status_of(registry: &Registry) -> RootKeyStatus {
    let uses = registry.root_uses();
    let roots = registry.root_keys();
    RootKeyStatus {
        current: roots.current().unwrap_or(0),
        versions: roots
            .versions()
            .map(|version| RootKeyVersionInfo {
                version,
                values: uses.of(version),
            })
            .collect(),
        pending: registry.root_pending(),
    }
}

/// The status once this node has applied everything committed (a change proposed through the
/// leader is then visible here).
async fn settled(s: &Internal) -> Result<RootKeyStatus, ClusterError> {
    s.node
        .reads()
        .read_barrier(Consistency::Linearizable)
        .await?;
    Ok(status_of(&s.node.state().read().registry))
}

/// `GET /admin/root-key`.
pub(super) async fn status(State(s): State<Internal>) -> Response {
    read_linearizable(&s, status_of).await
}

/// `POST /admin/root-key/rotate`: installs the next version; the leader then re-wraps. With a
/// target `version`, a call whose version is already installed changes nothing (idempotent).
pub(super) async fn rotate(
    State(s): State<Internal>,
    Json(req): Json<RotateRootKeyRequest>,
) -> Response {
    let rotated = async {
        s.node.keyring().ensure_root_key(s.node.writes()).await?;
        s.node
            .reads()
            .read_barrier(Consistency::Linearizable)
            .await?;
        let current = || {
            s.node
                .state()
                .read()
                .registry
                .root_keys()
                .current()
                .unwrap_or(0)
        };
        match req.version {
            Some(v) if current() >= v => return settled(&s).await,
            Some(v) if current().checked_add(1) != Some(v) => {
                return Err(ClusterError::BadRequest(format!(
                    "root-key version {} is current: a rotation installs {}, not {v}",
                    current(),
                    current().saturating_add(1)
                )))
            }
            _ => {}
        }
        match s.node.keyring().rotate(s.node.writes()).await {
            Ok(_) => settled(&s).await,
            // A racing call for the same version won: the version asked for is there.
            Err(e) => match req.version {
                Some(v) if current() >= v => settled(&s).await,
                _ => Err(e),
            },
        }
    };
    json_or_error(rotated.await)
}

/// `POST /admin/root-key/retire`: removes an older version no stored value uses any more.
pub(super) async fn retire(
    State(s): State<Internal>,
    Json(req): Json<RetireRootKeyRequest>,
) -> Response {
    let retired = async {
        apply(
            &s,
            Command::RetireRootKey {
                version: req.version,
            },
        )
        .await?;
        settled(&s).await
    };
    json_or_error(retired.await)
}
