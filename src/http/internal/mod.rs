//! The internal listener: Raft RPC ([`raft_rpc`]), forwarded writes and read indexes
//! ([`cluster`]), and the admin endpoints the `raftkms cluster` commands use ([`admin`]). Every
//! route requires the cluster secret and cluster id.

mod admin;
mod cluster;
mod raft_rpc;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::node::Node;
use crate::transport::peer::{paths, PeerAuth, CLUSTER_HEADER};
use crate::wire::paths as admin_paths;

type SharedNode = Arc<Node>;

/// The internal listener's state: the node and how peers authenticate to it.
#[derive(Clone)]
struct Internal {
    node: SharedNode,
    auth: PeerAuth,
}

/// Largest internal request (a snapshot chunk or a batch of records).
const MAX_BODY: usize = 256 << 20;

/// The internal router.
pub fn router(node: SharedNode) -> Router {
    let auth = node.peers().auth.clone();
    let state = Internal { node, auth };
    Router::new()
        .route(paths::RAFT_APPEND, post(raft_rpc::append))
        .route(paths::RAFT_VOTE, post(raft_rpc::vote))
        .route(paths::RAFT_SNAPSHOT, post(raft_rpc::snapshot))
        .route(paths::FORWARD_WRITE, post(cluster::forwarded_write))
        .route(paths::READ_INDEX, post(cluster::read_index))
        .route(admin_paths::INIT, post(admin::init))
        .route(admin_paths::JOIN, post(admin::join))
        .route(admin_paths::REMOVE, post(admin::remove))
        .route(admin_paths::STATUS, get(admin::status))
        .route(admin_paths::DIGEST, get(admin::digest))
        .route(admin_paths::RECORDS, post(admin::put_many))
        .route(
            admin_paths::ACCOUNTS,
            post(admin::create_account).get(admin::list_accounts),
        )
        .route(
            admin_paths::CREDENTIALS,
            post(admin::create_credential).get(admin::list_credentials),
        )
        .route(
            "/admin/credentials/{secret_id}",
            delete(admin::revoke_credential),
        )
        .route(
            "/admin/records/{name}",
            put(admin::put).get(admin::get).delete(admin::delete_record),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Refuses any request without the right cluster secret and cluster id, before it reaches
/// Raft: a stray or hostile peer cannot vote, append or write.
async fn authenticate(State(s): State<Internal>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cluster = req
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|v| v.to_str().ok());
    match (presented, cluster) {
        (Some(secret), Some(cluster))
            if cluster == s.auth.cluster_id && s.auth.secret_matches(secret) =>
        {
            next.run(req).await
        }
        (Some(_), Some(cluster)) if cluster != s.auth.cluster_id => (
            StatusCode::UNAUTHORIZED,
            format!("request is for cluster `{cluster}`, this node belongs to another cluster"),
        )
            .into_response(),
        _ => (StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response(),
    }
}

/// A binary (versioned bincode) reply.
fn binary<T: Serialize>(value: &T) -> Response {
    match codec::encode("internal reply", value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Decodes a binary request body; the error is the ready-made `400` reply.
// The error is the ready-made HTTP reply; its size does not matter on this cold path.
#[allow(clippy::result_large_err)]
fn decode_body<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, Response> {
    codec::decode(what, body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}
