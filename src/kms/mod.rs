//! The KMS core: typed operations on keys (create, describe, rotate, encrypt, sign, import, …)
//! that know no HTTP, JSON or dialect field names. An API dialect (`http::tencent` today)
//! authenticates the caller, parses its parameters into the typed requests of this module,
//! calls one operation and renders the typed result.
//!
//! Every operation passes two seams: [`Authorizer`] before anything is read or proposed, and the
//! audit seam ([`audit`]): the operation notes what it did in the request's [`Scope`], and the
//! dialect calls [`Kms::finish`] when the request ends, refused or not, which writes its one
//! record. The consistency of a request's reads is a field of its [`Scope`].

pub mod asymmetric;
pub mod audit;
pub mod audit_query;
pub mod authorize;
pub mod cloud_binding;
pub mod cluster;
pub mod crypto;
pub mod data_keys;
pub mod drill_runner;
pub mod error;
pub mod import;
pub mod keys;
pub mod lifecycle;
pub mod post_quantum;
pub mod rate;
pub mod replica;
pub mod service;
pub mod tags;

use std::future::Future;
use std::sync::{Arc, Mutex};

pub use audit::{Finished, Noted, Trail};
pub use authorize::{
    AccountScope, Action, AuthRequest, Authorizer, Caller, Policies, Refusal, RefusalScope,
    Resource,
};
pub use error::KmsError;

use crate::clock::SharedClock;
use crate::config::Consistency;
use crate::crypto::{CryptoError, Secret};
use crate::node::Node;
use crate::registry::key::{KeyOp, KeyRecord};
use crate::registry::{Command, Outcome};

/// What a dialect knows about a request before the core sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The action as policies name it: `kms:<API action>` of the dialect's action.
    pub policy_action: String,
    /// The client's address.
    pub source: Option<std::net::SocketAddr>,
}

/// The scope of one authenticated request: who, in which region, how consistent its reads are.
#[derive(Debug)]
pub struct Scope {
    caller: Caller,
    request: RequestInfo,
    region: String,
    consistency: Consistency,
    /// Whether the read gate already ran for this request (a linearizable request passes it once,
    /// when its scope is opened).
    gated: bool,
    /// What the core's operation did, for the audit record.
    noted: Mutex<Noted>,
    /// Whether a stale request was brought up to date for a write ([`catch_up`]).
    caught_up: std::sync::atomic::AtomicBool,
}

impl Scope {
    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The region whose keys the request sees (checked to be served).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// How consistent the request's reads are.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    /// What the dialect said about the request.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// Notes a key the operation made (CreateKey: its id is known only once it exists).
    fn note_key(&self, key_id: &str) {
        self.noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .key_ids
            .push(key_id.to_string());
    }

    /// What the core noted about the request so far.
    pub fn noted(&self) -> Noted {
        self.noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A page of a listing: the items asked for and how many there are in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
}

/// The KMS core of one node.
pub struct Kms {
    node: Arc<Node>,
    seams: Seams,
    rates: rate::RateLimits,
    /// Key-pair generations (CreateKey of asymmetric keys, GetParametersForImport) running at
    /// once: one per core. The permit moves into the blocking generation itself, so a request
    /// dropped mid-way (the client hung up) still holds it until the generation ends.
    key_generation: Arc<tokio::sync::Semaphore>,
    /// Asymmetric CreateKeys in progress per account, counted against the quota with the keys
    /// already applied.
    creating: std::sync::Mutex<std::collections::HashMap<u64, u32>>,
    /// Audit queries (LookUpEvents) running at once on this node: one.
    audit_queries: tokio::sync::Semaphore,
    /// The DR drill this node started from the console (`[console] dev-drill-dir`).
    drills: drill_runner::DrillRunner,
}

/// How long the cluster view waits for the read gate before it answers from the node's own
/// state (`Kms::open_local_scope`).
pub const LOCAL_SCOPE_GATE: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest KeyId a request may name.
const MAX_KEY_ID: usize = 128;

/// How long a request may wait for a key-generation permit before `RequestLimitExceeded`.
const KEY_GENERATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An asymmetric CreateKey of an account in progress (see `Kms::creating`); ends when dropped.
pub(crate) struct Creating<'a> {
    kms: &'a Kms,
    uin: u64,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        let mut m = self
            .kms
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.uin) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.uin);
            }
        }
    }
}

/// The two seams every operation passes, and the clock that dates its audit record.
struct Seams {
    authorizer: Arc<dyn Authorizer>,
    trail: Trail,
    clock: SharedClock,
    /// The node whose caught-up state a write is authorized against (`None` in unit tests of
    /// the seams alone).
    node: Option<Arc<Node>>,
}

/// Brings a request that skipped the read gate (it chose `stale`) up to date before it writes:
/// the read gate, then its credential checked again on the caught-up state. A write is never
/// authorized or proposed on stale authority (a revoked credential or permission writes nothing
/// anywhere once its revocation was acknowledged).
async fn catch_up(node: &Node, scope: &Scope) -> Result<(), KmsError> {
    if scope.gated || scope.caught_up.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(());
    }
    node.reads().read_barrier(Consistency::Linearizable).await?;
    let known = node
        .state()
        .read()
        .registry
        .accounts()
        .credential(&scope.caller.credential_id)
        .is_some_and(|c| c.uin == scope.caller.uin);
    if !known {
        return Err(KmsError::UnknownCredential(
            scope.caller.credential_id.clone(),
        ));
    }
    scope
        .caught_up
        .store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

impl Seams {
    /// Authorizes one more resource of an operation already running (e.g. the destination keys
    /// of ReplicateKey, in other regions).
    fn authorize_also(
        &self,
        scope: &Scope,
        action: Action,
        resource: &Resource,
    ) -> Result<(), KmsError> {
        self.authorize_as(scope, action, &scope.request.policy_action, resource)
    }

    /// Authorizes one more action of an operation already running, under a policy action of its
    /// own (ImportDataKey opening a ciphertext must also be allowed `kms:Decrypt` on its key).
    fn authorize_as(
        &self,
        scope: &Scope,
        action: Action,
        policy_action: &str,
        resource: &Resource,
    ) -> Result<(), KmsError> {
        let request = AuthRequest {
            caller: &scope.caller,
            action,
            policy_action,
            resource,
            region: &scope.region,
            source_ip: scope.request.source.map(|a| a.ip()),
        };
        self.authorizer
            .authorize(&request)
            .map_err(KmsError::Denied)
    }

    /// Authorizes, then runs the operation (only if allowed), noting what it did for the audit
    /// record the dialect writes when the request ends.
    async fn run<T>(
        &self,
        scope: &Scope,
        action: Action,
        resource: Resource,
        operation: impl Future<Output = Result<T, KmsError>>,
    ) -> Result<T, KmsError> {
        let request = AuthRequest {
            caller: &scope.caller,
            action,
            policy_action: &scope.request.policy_action,
            resource: &resource,
            region: &scope.region,
            source_ip: scope.request.source.map(|a| a.ip()),
        };
        {
            let mut noted = scope
                .noted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            noted.action = Some(action);
            noted.write = action.is_write();
            match &resource {
                Resource::Keys { key_ids, .. }
                | Resource::DataKeys {
                    data_key_ids: key_ids,
                    ..
                } => noted.key_ids = key_ids.clone(),
                _ => {}
            }
        }
        // No KeyId or DataKeyId is this long (they are UUIDs): refused before it costs anything.
        match &resource {
            Resource::Keys { key_ids, .. } => {
                if let Some(id) = key_ids.iter().find(|id| id.len() > MAX_KEY_ID) {
                    return Err(KmsError::KeyNotFound(id.chars().take(MAX_KEY_ID).collect()));
                }
            }
            Resource::DataKeys { data_key_ids, .. } => {
                if let Some(id) = data_key_ids.iter().find(|id| id.len() > MAX_KEY_ID) {
                    return Err(KmsError::DataKeyNotFound(
                        id.chars().take(MAX_KEY_ID).collect(),
                    ));
                }
            }
            _ => {}
        }
        if action.is_write() {
            if let Some(node) = &self.node {
                catch_up(node, scope).await?;
            }
        }
        match self.authorizer.authorize(&request) {
            Ok(()) => operation.await,
            Err(refusal) => Err(KmsError::Denied(refusal)),
        }
    }
}

impl Kms {
    /// The core with the node's seams: policies of users and roles, records to `trail`.
    pub fn new(node: Arc<Node>, trail: Trail) -> Self {
        let policies = Arc::new(Policies::new(node.clone()));
        Kms::with_seams(node, policies, trail)
    }

    /// The core with the given authorizer and audit trail.
    pub fn with_seams(node: Arc<Node>, authorizer: Arc<dyn Authorizer>, trail: Trail) -> Self {
        let clock = node.clock().clone();
        let node_for_seams = node.clone();
        let rates = rate::RateLimits::new(&node.config().rate_limits);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Kms {
            node,
            rates,
            key_generation: Arc::new(tokio::sync::Semaphore::new(cores)),
            creating: std::sync::Mutex::new(std::collections::HashMap::new()),
            audit_queries: tokio::sync::Semaphore::new(1),
            drills: Default::default(),
            seams: Seams {
                authorizer,
                trail,
                clock,
                node: Some(node_for_seams),
            },
        }
    }

    /// The node this core serves from (health, metrics and positions for the dialects).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The consistency of requests that do not choose one.
    pub fn default_consistency(&self) -> Consistency {
        self.node.config().default_consistency
    }

    /// The current wall-clock time in seconds.
    pub fn now_secs(&self) -> u64 {
        self.node.clock().wall_secs()
    }

    /// Finds an API credential and unwraps its secret key, for a dialect to check a signature
    /// with: the account, who the credential speaks for, and the secret key. A credential this
    /// node has not applied yet (created a moment ago through another node) is looked for again
    /// after the read gate.
    pub async fn credential(
        &self,
        secret_id: &str,
        consistency: Consistency,
    ) -> Result<(u64, crate::registry::iam::Principal, Secret), KmsError> {
        let (credential, principal) = match self.lookup_credential(secret_id) {
            Some(found) => found,
            None => {
                self.node.reads().read_barrier(consistency).await?;
                self.lookup_credential(secret_id)
                    .ok_or_else(|| KmsError::UnknownCredential(secret_id.to_string()))?
            }
        };
        let secret = match self.node.keyring().credential_secret(&credential) {
            // Read just before a re-wrap and a root-key retirement were applied: read it again.
            Err(CryptoError::RootKeyVersion(_)) => {
                let (fresh, _) = self
                    .lookup_credential(secret_id)
                    .ok_or_else(|| KmsError::UnknownCredential(secret_id.to_string()))?;
                self.node.keyring().credential_secret(&fresh)?
            }
            other => other?,
        };
        Ok((credential.uin, principal, secret))
    }

    /// A credential and who it speaks for, read under one guard (a revocation or an identity's
    /// deletion removes both in one apply, so they are never seen apart).
    fn lookup_credential(
        &self,
        secret_id: &str,
    ) -> Option<(
        crate::registry::account::Credential,
        crate::registry::iam::Principal,
    )> {
        let state = self.node.state().read();
        let credential = state.registry.accounts().credential(secret_id)?.clone();
        Some((credential, state.registry.iam().principal(secret_id)))
    }

    /// Opens the scope of a request whose signature the dialect has verified. Linearizable
    /// requests pass the read gate here, before anything is read or proposed, and the credential
    /// is checked again against the caught-up state: a credential whose revocation was
    /// acknowledged anywhere is refused even if this node had not applied it yet. (Stale requests
    /// are answered from local state by definition, revocations included.) `region` defaults to
    /// the node's own and must be served by the cluster.
    pub async fn open_scope(
        &self,
        caller: Caller,
        request: RequestInfo,
        region: Option<String>,
        consistency: Consistency,
    ) -> Result<Scope, KmsError> {
        let gated = consistency == Consistency::Linearizable;
        if !gated {
            let policy = &self.node.config().reads;
            if !policy.allow_stale {
                return Err(KmsError::StaleNotAllowed);
            }
            match self.node.health().millis_since_leader_contact() {
                // A stale answer carries how far behind it may be; a node that has not heard from
                // a leader since it started cannot say, so it does not answer (retryable).
                None => return Err(crate::raft::error::ClusterError::ReadIndex(
                    "no leader contact since this node started: a stale answer's lag is unknown"
                        .into(),
                )
                .into()),
                Some(lag_ms) if policy.max_stale_ms > 0 && lag_ms > policy.max_stale_ms => {
                    return Err(KmsError::StaleTooOld {
                        lag_ms,
                        max_ms: policy.max_stale_ms,
                    })
                }
                Some(_) => {}
            }
        }
        if gated {
            self.node.reads().read_barrier(consistency).await?;
            if !self.credential_still_valid(&caller) {
                return Err(KmsError::UnknownCredential(caller.credential_id));
            }
        }
        self.scope(caller, request, region, consistency, gated)
    }

    /// Opens the scope of the operators' cluster view (`DescribeClusterStatus`), which must
    /// answer on a node that has lost its quorum: it first tries the read gate for at most
    /// [`LOCAL_SCOPE_GATE`] (then, as any linearizable request, a credential or operator status
    /// revoked anywhere is refused), and without a quorum answers from this node's own state,
    /// whatever its stale-read settings. Nothing such a request reads is a key, a secret or a
    /// tenant's data.
    pub async fn open_local_scope(
        &self,
        caller: Caller,
        request: RequestInfo,
        region: Option<String>,
    ) -> Result<Scope, KmsError> {
        let gate = self.node.reads().read_barrier(Consistency::Linearizable);
        if let Ok(Ok(_)) = tokio::time::timeout(LOCAL_SCOPE_GATE, gate).await {
            if !self.credential_still_valid(&caller) {
                return Err(KmsError::UnknownCredential(caller.credential_id));
            }
            return self.scope(caller, request, region, Consistency::Linearizable, true);
        }
        self.scope(caller, request, region, Consistency::Stale, false)
    }

    /// Whether the caller's credential still exists, for the same account and principal, in
    /// this node's applied state (checked again once a request has passed the read gate).
    fn credential_still_valid(&self, caller: &Caller) -> bool {
        self.lookup_credential(&caller.credential_id)
            .is_some_and(|(c, p)| c.uin == caller.uin && p == caller.principal)
    }

    fn scope(
        &self,
        caller: Caller,
        request: RequestInfo,
        region: Option<String>,
        consistency: Consistency,
        gated: bool,
    ) -> Result<Scope, KmsError> {
        let config = self.node.config();
        let region = region
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| config.region.clone());
        if !config.served_regions().contains(&region) {
            return Err(KmsError::UnsupportedRegion(region));
        }
        Ok(Scope {
            caller,
            request,
            region,
            consistency,
            gated,
            noted: Mutex::new(Noted::default()),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A permit to generate a key pair (bounded concurrency; see `key_generation`), waited for
    /// at most `KEY_GENERATION_WAIT`; move it into the blocking generation.
    pub(crate) async fn key_generation_permit(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, KmsError> {
        match tokio::time::timeout(
            KEY_GENERATION_WAIT,
            self.key_generation.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(KmsError::Internal(e.to_string())),
            Err(_) => Err(KmsError::RateLimited {
                per: "node",
                class: "key-generation",
            }),
        }
    }

    /// Registers an asymmetric CreateKey of account `uin` in `region`, refusing it when the
    /// account's applied keys plus those being created reach `cmk_limit`.
    pub(crate) fn start_creating(
        &self,
        region: &str,
        uin: u64,
        cmk_limit: u32,
    ) -> Result<Creating<'_>, KmsError> {
        let applied = self.node.state().read().registry.keys().count(region, uin);
        let mut m = self
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(uin).or_insert(0);
        if applied + *n as usize >= cmk_limit as usize {
            return Err(crate::registry::RegistryError::CmkLimitExceeded.into());
        }
        *n += 1;
        Ok(Creating { kms: self, uin })
    }

    /// Admits a request of `class` from an authenticated caller under this node's rate limits
    /// (per credential and per account), or refuses it with `KmsError::RateLimited`. Dialects
    /// call it right after the signature check, before the scope is opened (read gate).
    pub fn admit(&self, caller: &Caller, class: rate::ActionClass) -> Result<(), KmsError> {
        self.rates.admit(caller, class)
    }

    /// How an unverified SecretId is recorded: as itself when such a credential exists, else
    /// only by a digest (a client that put its secret key where the SecretId goes must not
    /// have it written to the trail and to syslog).
    fn claimed(&self, secret_id: &str) -> String {
        if self.lookup_credential(secret_id).is_some() {
            return secret_id.to_string();
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret_id.as_bytes());
        format!("unknown:sha256:{}", hex::encode(&digest[..8]))
    }

    /// Whether this node may take a request at all: with `[audit] fail-closed` (the default), a
    /// node whose audit trail has failed refuses every request before anything is done.
    pub fn audit_gate(&self) -> Result<(), KmsError> {
        match &self.seams.trail {
            Trail::File {
                log,
                fail_closed: true,
            } if !log.is_healthy() => {
                log.note_refusal();
                self.node.metrics().audit_refusals.inc();
                Err(KmsError::AuditUnavailable)
            }
            _ => Ok(()),
        }
    }

    /// Writes the one audit record of a request that ended (the dialect calls it with the code
    /// it is about to answer). The record of a write is durable before this returns; others reach
    /// disk within `audit.flush-interval-ms`. When the trail cannot take the record and
    /// `audit.fail-closed` is on, the answer must not leave: `Err`, and the dialect answers the
    /// error instead (a write may have been applied).
    pub async fn finish(&self, f: Finished<'_>) -> Result<(), KmsError> {
        let noted = f.scope.map(Scope::noted).unwrap_or_default();
        let caller = f.scope.map(Scope::caller);
        let event = crate::audit::Event {
            at_ms: self.seams.clock.wall_ms(),
            node_id: self.node.id(),
            region: f
                .scope
                .map_or_else(|| self.node.config().region.clone(), |s| s.region.clone()),
            uin: caller.map(|c| c.uin),
            principal: caller.map(|c| c.principal.to_string()),
            secret_id: caller
                .map(|c| c.credential_id.clone())
                .or_else(|| f.claimed_secret_id.map(|id| self.claimed(id))),
            source: f.source.map(|a| a.to_string()),
            dialect: f.dialect.to_string(),
            action: f.scope.map_or_else(
                || f.action.chars().take(128).collect::<String>(),
                |s| s.request.policy_action.clone(),
            ),
            key_ids: noted.key_ids,
            request_id: f.request_id.to_string(),
            result: f.error_code.unwrap_or("Success").to_string(),
            consistency: f.scope.map(|s| {
                match s.consistency {
                    Consistency::Linearizable => "linearizable",
                    Consistency::Stale => "stale",
                }
                .to_string()
            }),
            latency_us: u64::try_from(f.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            write: noted.write,
        };
        let (log, fail_closed) = match &self.seams.trail {
            Trail::Log => {
                tracing::debug!(target: "raftkms::audit", event = ?event, "request");
                return Ok(());
            }
            Trail::File { log, fail_closed } => (log, *fail_closed),
        };
        audit::record(&self.node, log, event, fail_closed)
            .await
            .map_err(|_| KmsError::AuditUnavailable)
    }

    /// The read gate for reads and crypto (linearizable unless the request chose stale).
    async fn gate(&self, scope: &Scope) -> Result<(), KmsError> {
        if !scope.gated {
            self.node.reads().read_barrier(scope.consistency).await?;
        }
        Ok(())
    }

    /// A key of the caller in the request's region, from applied state.
    fn key(&self, scope: &Scope, key_id: &str) -> Result<KeyRecord, KmsError> {
        self.node
            .state()
            .read()
            .registry
            .keys()
            .get(&scope.region, scope.caller.uin, key_id)
            .cloned()
            .ok_or_else(|| KmsError::KeyNotFound(key_id.to_string()))
    }

    /// Proposes a command for `scope`'s caller; returns the proposer's time (seconds) stamped on
    /// it. A write never runs on stale authority: a request that chose `stale` (and so skipped
    /// the gate when its scope was opened) passes the read gate now, and its credential is
    /// checked against the caught-up state, so a revoked credential writes nothing anywhere.
    async fn propose(&self, scope: &Scope, command: Command) -> Result<u64, KmsError> {
        catch_up(&self.node, scope).await?;
        let writes = self.node.writes();
        let env = writes.envelope(None, command);
        let at = env.issued_at_ms / 1000;
        match writes.propose(env).await? {
            Outcome::Applied { .. } => Ok(at),
            Outcome::Rejected(e) => Err(e.into()),
            Outcome::NoCommand | Outcome::Batch(_) => {
                Err(KmsError::Internal("the command produced no outcome".into()))
            }
        }
    }

    /// The deletion date a scheduled deletion stamped, proposed at `at` (seconds) with a window
    /// of `pending_days`: the leader's (a forwarded write is stamped with the leader's clock),
    /// read back with `read` once this node has applied the write, rather than computed from this
    /// node's clock; the computed date only if it cannot be read back.
    async fn applied_deletion_date(
        &self,
        read: impl FnOnce() -> Option<u64>,
        at: u64,
        pending_days: u32,
    ) -> u64 {
        self.node
            .reads()
            .read_barrier(Consistency::Linearizable)
            .await
            .ok()
            .and_then(|_| read())
            .filter(|d| *d != 0)
            .unwrap_or(at + u64::from(pending_days) * 86_400)
    }

    /// Proposes one lifecycle operation on keys of the caller in the request's region; returns
    /// the proposer's time stamped on it.
    async fn propose_key_op(
        &self,
        scope: &Scope,
        key_ids: Vec<String>,
        op: KeyOp,
    ) -> Result<u64, KmsError> {
        self.propose(
            scope,
            Command::KeyOp {
                region: scope.region.clone(),
                uin: scope.caller.uin,
                key_ids,
                op,
            },
        )
        .await
    }

    /// Unwraps one material version of a key.
    fn material(&self, key: &KeyRecord, version: u32) -> Result<Secret, KmsError> {
        let v = key.version(version).ok_or(KmsError::InvalidCiphertext(
            error::CiphertextProblem::UnknownVersion,
        ))?;
        let keyring = self.node.keyring();
        match keyring.unwrap_material(&key.key_id, version, key.owner_uin, &v.wrapped) {
            // The record was read just before a re-wrap and the retirement of its root version
            // were applied: read it again (it is under the current version now).
            Err(CryptoError::RootKeyVersion(_)) => {
                let fresh = self
                    .node
                    .state()
                    .read()
                    .registry
                    .keys()
                    .get_any(&key.region, &key.key_id)
                    .and_then(|k| k.version(version))
                    .map(|m| m.wrapped.clone());
                let wrapped = fresh.ok_or(KmsError::InvalidCiphertext(
                    error::CiphertextProblem::UnknownVersion,
                ))?;
                Ok(keyring.unwrap_material(&key.key_id, version, key.owner_uin, &wrapped)?)
            }
            other => Ok(other?),
        }
    }
}

/// The resource of operations on one key.
fn one_key(scope: &Scope, key_id: &str) -> Resource {
    Resource::Keys {
        region: scope.region.clone(),
        key_ids: vec![key_id.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Refuses every action on the service itself.
    struct NoService;

    impl Authorizer for NoService {
        fn authorize(&self, r: &AuthRequest<'_>) -> Result<(), Refusal> {
            match r.resource {
                Resource::Service => Err(Refusal {
                    reason: "not on the service".into(),
                    scope: RefusalScope::Action,
                }),
                _ => Ok(()),
            }
        }
    }

    fn scope() -> Scope {
        Scope {
            caller: Caller {
                uin: 7,
                credential_id: "AKIDx".into(),
                principal: crate::registry::iam::Principal::Root,
            },
            request: RequestInfo::default(),
            region: "ap-guangzhou".into(),
            consistency: Consistency::Stale,
            gated: false,
            noted: Mutex::new(Noted::default()),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn seams() -> Seams {
        Seams {
            authorizer: Arc::new(NoService),
            trail: Trail::Log,
            clock: ManualClock::new(5_000),
            node: None,
        }
    }

    #[tokio::test]
    async fn every_operation_is_noted_and_a_refusal_runs_nothing() {
        let seams = seams();
        let keys = Resource::Keys {
            region: "ap-guangzhou".into(),
            key_ids: vec!["k1".into()],
        };

        let s = scope();
        let out = seams
            .run(&s, Action::Encrypt, keys.clone(), async { Ok(1) })
            .await;
        assert_eq!(out, Ok(1));
        assert_eq!(
            s.noted(),
            Noted {
                action: Some(Action::Encrypt),
                key_ids: vec!["k1".into()],
                write: false
            }
        );

        let s = scope();
        let ran = std::sync::atomic::AtomicBool::new(false);
        let out: Result<(), _> = seams
            .run(&s, Action::GenerateRandom, Resource::Service, async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(out, Err(KmsError::Denied(_))), "{out:?}");
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "a refused operation ran"
        );
        assert_eq!(s.noted().action, Some(Action::GenerateRandom));

        let s = scope();
        let _ = seams
            .run(&s, Action::DisableKey, keys, async { Ok(()) })
            .await;
        assert!(s.noted().write, "DisableKey is a write");
    }
}
