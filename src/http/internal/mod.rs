//! The internal listener: Raft RPC ([`raft_rpc`]), forwarded writes and read indexes
//! ([`cluster`]), and the admin endpoints the `raftkms cluster` commands use ([`admin`]).
//!
//! Two kinds of caller, never interchangeable. Under mutual TLS (`[tls]`) the listener has
//! already verified the client certificate against the cluster CA and its cluster id: the peer
//! routes accept only a node certificate, the admin routes only an admin certificate. In
//! plaintext (`insecure-plaintext`) the peer routes need the cluster secret and the admin routes
//! the admin token, each with the cluster id.

mod admin;
mod cluster;
mod iam;
mod raft_rpc;
mod root_key;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::crypto::SecretString;
use crate::node::Node;
use crate::tls::PeerIdentity;
use crate::transport::peer::{constant_time_eq, paths, CLUSTER_HEADER};
use crate::transport::version::PeerVersion;
use crate::wire::paths as admin_paths;
use crate::wire::AdminError;

type SharedNode = Arc<Node>;

/// The internal listener's state: the node, and the admin token of a plaintext listener.
#[derive(Clone)]
struct Internal {
    node: SharedNode,
    admin_token: Option<Arc<SecretString>>,
    /// This node's audit trail, for members' audit queries (`None`: no trail kept).
    audit: Option<Arc<crate::audit::AuditLog>>,
}

/// Largest internal request (a snapshot chunk or a batch of records).
const MAX_BODY: usize = 256 << 20;

/// The internal router.
pub fn router(node: SharedNode, audit: Option<Arc<crate::audit::AuditLog>>) -> Router {
    let admin_token = node.config().admin_token.clone().map(Arc::new);
    let state = Internal {
        node,
        admin_token,
        audit,
    };
    let peer = Router::new()
        .route(paths::RAFT_APPEND, post(raft_rpc::append))
        .route(paths::RAFT_VOTE, post(raft_rpc::vote))
        .route(paths::RAFT_SNAPSHOT, post(raft_rpc::snapshot))
        .route(paths::FORWARD_WRITE, post(cluster::forwarded_write))
        .route(paths::READ_INDEX, post(cluster::read_index))
        .route(paths::LEASE, post(cluster::lease))
        .route(paths::AUDIT_QUERY, post(cluster::audit_query))
        .route(paths::NODE_STATUS, post(cluster::node_status))
        .route(paths::VERSION, get(|| async { StatusCode::NO_CONTENT }))
        .layer(middleware::from_fn_with_state(state.clone(), require_peer))
        // Outside the authentication, so that a refusal says which build refused (a joining
        // node's release is told apart from the first release's by it). Under mutual TLS only a
        // holder of a certificate of this cluster gets this far.
        .layer(middleware::from_fn_with_state(state.clone(), peer_version));
    let admin = Router::new()
        .route(admin_paths::INIT, post(admin::init))
        .route(admin_paths::JOIN, post(admin::join))
        .route(admin_paths::REMOVE, post(admin::remove))
        .route(admin_paths::STATUS, get(admin::status))
        .route(admin_paths::DIGEST, get(admin::digest))
        .route(admin_paths::BACKUP, get(admin::backup))
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
            "/admin/accounts/{uin}/identities",
            post(iam::create_identity).get(iam::list_identities),
        )
        .route(
            "/admin/accounts/{uin}/users/{name}",
            delete(iam::delete_user),
        )
        .route(
            "/admin/accounts/{uin}/roles/{name}",
            delete(iam::delete_role),
        )
        .route(
            "/admin/accounts/{uin}/users/{name}/credentials",
            post(iam::user_credential),
        )
        .route(
            "/admin/accounts/{uin}/roles/{name}/credentials",
            post(iam::role_credential),
        )
        .route(
            "/admin/accounts/{uin}/policies",
            post(iam::create_policy).get(iam::list_policies),
        )
        .route(
            "/admin/accounts/{uin}/policies/{name}",
            put(iam::replace_policy).delete(iam::delete_policy),
        )
        .route("/admin/accounts/{uin}/attachments", post(iam::attach))
        .route("/admin/audit/checkpoints", get(iam::audit_checkpoints))
        .route(admin_paths::UPGRADE, get(admin::upgrade_status))
        .route(admin_paths::UPGRADE_FINALIZE, post(admin::upgrade_finalize))
        .route(admin_paths::ROOT_KEY, get(root_key::status))
        .route(admin_paths::ROOT_KEY_ROTATE, post(root_key::rotate))
        .route(admin_paths::ROOT_KEY_RETIRE, post(root_key::retire))
        .route(
            "/admin/records/{name}",
            put(admin::put).get(admin::get).delete(admin::delete_record),
        )
        .layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .layer(middleware::from_fn_with_state(state.clone(), record_admin));
    peer.merge(admin)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Who a request comes from, as far as the internal listener can tell.
enum Caller<'a> {
    /// Verified by mutual TLS.
    Certificate(&'a PeerIdentity),
    /// Plaintext: the bearer token presented for this cluster.
    Token(&'a str),
    /// Plaintext, no or an unusable credential.
    Nobody,
}

fn caller(req: &Request) -> Caller<'_> {
    if let Some(id) = req.extensions().get::<PeerIdentity>() {
        return Caller::Certificate(id);
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cluster = req
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|v| v.to_str().ok());
    match (token, cluster) {
        (Some(t), Some(_)) => Caller::Token(t),
        _ => Caller::Nobody,
    }
}

/// The cluster id header must name this cluster (plaintext; a certificate's cluster was checked
/// by the listener).
#[allow(clippy::result_large_err)]
fn cluster_matches(s: &Internal, req: &Request) -> Result<(), Response> {
    if req.extensions().get::<PeerIdentity>().is_some() {
        return Ok(());
    }
    let own = &s.node.peers().cluster_id;
    match req
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(c) if c == own => Ok(()),
        Some(c) => Err(refuse(
            &s.node,
            "cluster",
            format!("request is for cluster `{c}`, this node belongs to another cluster"),
        )),
        None => Err(refuse(&s.node, "credentials", "missing cluster id".into())),
    }
}

fn refuse(node: &Node, reason: &'static str, message: String) -> Response {
    node.metrics().internal_refused(reason);
    tracing::debug!(reason, %message, "internal request refused");
    (StatusCode::UNAUTHORIZED, message).into_response()
}

/// Peer routes: a node certificate of this cluster, or (plaintext) the cluster secret. A stray
/// or hostile process cannot vote, append, write or read.
async fn require_peer(State(s): State<Internal>, req: Request, next: Next) -> Response {
    if let Err(r) = cluster_matches(&s, &req) {
        return r;
    }
    let allowed = match caller(&req) {
        Caller::Certificate(PeerIdentity::Node { node_id, .. }) => {
            // A forwarded write or a read index serves a member of this cluster only. (Raft's own
            // RPCs may come from a node this one does not know yet: a new leader whose membership
            // entry has not reached this node, so they are checked by sender, not membership.)
            let path = req.uri().path();
            // (A node about to join is asked for its version by a leader it does not know yet.)
            let raft_rpc = path.starts_with("/raft/") || path == paths::VERSION;
            if !raft_rpc && !s.node.is_member(*node_id) {
                let message = format!("node {node_id} is not a member of this cluster");
                return refuse(&s.node, "not-a-member", message);
            }
            true
        }
        Caller::Certificate(other) => {
            let message = format!("{other} is not a node: peer routes need a node certificate");
            return refuse(&s.node, "not-a-node", message);
        }
        Caller::Token(t) => !s.node.peers().is_tls() && s.node.peers().secret_matches(t),
        Caller::Nobody => false,
    };
    if !allowed {
        return refuse(
            &s.node,
            "credentials",
            "missing or wrong cluster secret".into(),
        );
    }
    next.run(req).await
}

/// Peer routes speak a versioned protocol (`transport::version`): a request in a protocol this
/// build does not serve is refused with `426` and a message naming both releases, before it
/// reaches Raft; every answer carries this build's version.
async fn peer_version(State(s): State<Internal>, req: Request, next: Next) -> Response {
    let refusal = match PeerVersion::from_headers(req.headers()) {
        Ok(v) => v.check_served().err(),
        Err(e) => Some(e),
    };
    let mut resp = match refusal {
        Some(message) => {
            s.node.metrics().internal_refused("protocol");
            // Before authentication: not logged above debug (anyone who reaches the port could
            // fill the log); the sending node logs its refusals itself.
            tracing::debug!(%message, "internal request in an unknown protocol refused");
            (StatusCode::UPGRADE_REQUIRED, message).into_response()
        }
        None => next.run(req).await,
    };
    crate::transport::version::put_this_build(resp.headers_mut());
    resp
}

/// Admin routes: an admin certificate of this cluster, or (plaintext) the admin token. A node
/// certificate (or the cluster secret) does not make its holder an admin.
async fn require_admin(State(s): State<Internal>, req: Request, next: Next) -> Response {
    if let Err(r) = cluster_matches(&s, &req) {
        return r;
    }
    let allowed = match caller(&req) {
        Caller::Certificate(PeerIdentity::Admin { .. }) => true,
        Caller::Certificate(other) => {
            let message =
                format!("{other} is not an admin: admin routes need an admin certificate");
            return refuse(&s.node, "not-an-admin", message);
        }
        Caller::Token(t) => s
            .admin_token
            .as_ref()
            .is_some_and(|expected| constant_time_eq(t, expected.expose())),
        // (Under TLS there is no admin token: `admin_token` is None and a token opens nothing.)
        Caller::Nobody => false,
    };
    if !allowed {
        return refuse(
            &s.node,
            "credentials",
            "missing or wrong admin token".into(),
        );
    }
    next.run(req).await
}

/// Every admin request, refused ones included, leaves one record in the node's audit trail
/// (dialect `admin`; a change's record is durable before its answer leaves): identity, policy,
/// credential and membership changes are what least privilege is audited on.
async fn record_admin(State(s): State<Internal>, req: Request, next: Next) -> Response {
    let Some(log) = s.audit.clone() else {
        return next.run(req).await;
    };
    let started = std::time::Instant::now();
    let write = req.method() != axum::http::Method::GET;
    let principal = match caller(&req) {
        Caller::Certificate(PeerIdentity::Admin { name, .. }) => format!("admin/{name}"),
        Caller::Certificate(PeerIdentity::Node { node_id, .. }) => format!("node/{node_id}"),
        Caller::Token(_) => "admin-token".to_string(),
        Caller::Nobody => "anonymous".to_string(),
    };
    let action = format!(
        "admin:{} {}",
        req.method(),
        req.uri().path().chars().take(256).collect::<String>()
    );
    let source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let event = crate::audit::Event {
        at_ms: s.node.clock().wall_ms(),
        node_id: s.node.id(),
        region: s.node.config().region.clone(),
        uin: None,
        principal: Some(principal),
        secret_id: None,
        source,
        dialect: "admin".into(),
        action,
        key_ids: Vec::new(),
        request_id: uuid::Uuid::new_v4().to_string(),
        result: if status.is_success() {
            "Success".into()
        } else {
            format!("HTTP {}", status.as_u16())
        },
        consistency: None,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        write,
    };
    let fail_closed = s.node.config().audit.fail_closed;
    match crate::kms::audit::record(&s.node, &log, event, fail_closed).await {
        Ok(()) => resp,
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(AdminError {
                error: format!(
                    "this node's audit trail cannot be written ({e}); the change may have been applied"
                ),
                retryable: true,
                leader: None,
            }),
        )
            .into_response(),
    }
}

/// Under mutual TLS, a Raft RPC must come from the node it claims to come from (the candidate of
/// a vote, the leader of an append or snapshot): one node's certificate cannot speak for another.
#[allow(clippy::result_large_err)]
fn sender_is(
    node: &Node,
    identity: Option<&PeerIdentity>,
    claimed: Option<u64>,
) -> Result<(), Response> {
    let node_id = match identity {
        Some(PeerIdentity::Node { node_id, .. }) => node_id,
        // Plaintext: the cluster secret is shared, there is no per-node identity to check.
        None => return Ok(()),
        Some(other) => {
            let message = format!("{other} is not a node");
            return Err(refuse(node, "not-a-node", message));
        }
    };
    if claimed == Some(*node_id) {
        return Ok(());
    }
    Err(refuse(
        node,
        "wrong-sender",
        format!(
            "the certificate names node {node_id}, the request speaks for node {}",
            claimed.map_or("none".to_string(), |c| c.to_string())
        ),
    ))
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
