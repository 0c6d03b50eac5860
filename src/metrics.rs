//! Prometheus metrics of one node, rendered in the text exposition format at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every metric the node exports. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    pub term: Gauge,
    pub leader_id: Gauge,
    pub is_leader: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub last_log_index: Gauge,
    pub append_seconds: Histogram,
    pub append_batch_size: Histogram,
    /// Writes proposed together in one log entry by the leader's write batcher.
    pub write_batch_size: Histogram,
    pub apply_seconds: Histogram,
    pub forwarded_writes: Counter,
    pub forward_failures: Counter,
    /// Scheduled backups this node wrote, and those that failed (`[backup]`).
    pub backups_written: Counter,
    pub backup_failures: Counter,
    pub read_gate_waits: Counter,
    pub read_gate_rounds: Counter,
    pub read_gate_leased: Counter,
    /// Linearizable reads a follower served under its read lease, without asking the leader.
    pub holder_reads: Counter,
    /// Follower read leases this node granted or renewed as leader.
    pub lease_grants: Counter,
    /// Lease requests this node refused as leader (the follower's log lagged).
    pub lease_refusals: Counter,
    /// Of the grants, those dated by the acknowledgements of appends the leader sent anyway,
    /// without a confirmation round of their own.
    pub lease_grants_from_acks: Counter,
    pub read_gate_seconds: Histogram,
    /// How long a batch of committed entries waited before it could be applied (follower read
    /// leases: until every counted holder has it, or the leader announced it).
    pub apply_gate_seconds: Histogram,
    pub stale_reads: Counter,
    pub scheduler_ticks: Counter,
    pub scheduler_proposals: Counter,
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
    pub key_pairs_generated: Counter,
    /// Audit records appended to the trail.
    pub audit_records: Counter,
    /// Requests refused because the audit trail could not record them (`audit.fail-closed`).
    pub audit_refusals: Counter,
    /// Requests served without a record because the trail failed and `audit.fail-closed` is off.
    pub audit_unrecorded: Counter,
    /// Audit chain heads this node checkpointed through Raft.
    pub audit_checkpoints: Counter,
    /// The current root-key version in this node's registry.
    pub root_key_version: Gauge,
    /// Stored values still wrapped under an older root-key version.
    pub root_key_pending: Gauge,
    /// Values this node (as leader) re-wrapped under the current root-key version.
    pub root_key_rewrapped: Counter,
    /// Values the re-wrap could not open (left as they are, retried on the next pass).
    pub root_key_rewrap_failures: Counter,
    /// Per listener (`listener="api"` or `"internal"`): what its connection limits did.
    pub listeners: ListenerMetrics,
    /// Internal requests refused, by reason (`credentials`, `cluster`, `not-a-node`,
    /// `not-an-admin`, `wrong-sender`).
    pub internal_refusals: Family<ReasonLabel, Counter>,
    /// Requests answered on the API listener per dialect, and their latency.
    pub api: ApiMetrics,
}

/// The API dialects a request was answered in (the `dialect` label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialectLabel {
    pub dialect: &'static str,
}

/// Upper bounds (seconds) of the API latency buckets: 50 µs doubling up to about 6.5 s, as the
/// other latency histograms.
pub const API_LATENCY_BOUNDS: usize = 18;

/// Requests answered on the API listener: a Prometheus counter and histogram per dialect, and
/// the same totals over every dialect as plain numbers, which the console's cluster view reads
/// (through `DescribeClusterStatus`) and turns into rates and percentiles per interval.
pub struct ApiMetrics {
    requests: Family<DialectLabel, Counter>,
    seconds: Family<DialectLabel, Histogram>,
    total: AtomicU64,
    micros: AtomicU64,
    buckets: [AtomicU64; API_LATENCY_BOUNDS + 1],
}

/// What [`ApiMetrics::totals`] reads: cumulative since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiTotals {
    pub requests: u64,
    /// Sum of the requests' latencies, in microseconds.
    pub micros: u64,
    /// Requests per latency bucket (not cumulative); the last one is above every bound.
    pub buckets: Vec<u64>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(
                    0.000_05,
                    2.0,
                    API_LATENCY_BOUNDS as u16,
                ))
            }),
            total: AtomicU64::new(0),
            micros: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ApiMetrics {
    /// The upper bound of latency bucket `i`, in seconds.
    pub fn bound(i: usize) -> f64 {
        0.000_05 * f64::powi(2.0, i as i32)
    }

    /// Counts one answered request that took `elapsed`.
    pub fn observe(&self, dialect: &'static str, elapsed: std::time::Duration) {
        let label = DialectLabel { dialect };
        let secs = elapsed.as_secs_f64();
        self.requests.get_or_create(&label).inc();
        self.seconds.get_or_create(&label).observe(secs);
        self.total.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        let i = (0..API_LATENCY_BOUNDS)
            .find(|&i| secs <= Self::bound(i))
            .unwrap_or(API_LATENCY_BOUNDS);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The totals since start.
    pub fn totals(&self) -> ApiTotals {
        ApiTotals {
            requests: self.total.load(Ordering::Relaxed),
            micros: self.micros.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The label of a refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The label of the listener metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: &'static str,
}

/// What the listeners' limits did, per listener.
#[derive(Default)]
pub struct ListenerMetrics {
    /// Connections open now.
    pub open: Family<ListenerLabel, Gauge>,
    /// Connections closed at once because the listener was at `max-connections`.
    pub refused: Family<ListenerLabel, Counter>,
    /// TLS handshakes that failed or timed out (a wrong CA, no client certificate, plaintext on a
    /// TLS port, a client that never finished).
    pub handshake_failures: Family<ListenerLabel, Counter>,
    /// Connections a peer certificate was refused on after the handshake (another cluster).
    pub identity_refused: Family<ListenerLabel, Counter>,
    /// Connections that ended in an error or a timeout (header read, idle keep-alive).
    pub connection_errors: Family<ListenerLabel, Counter>,
}

impl ListenerMetrics {
    pub fn label(listener: &'static str) -> ListenerLabel {
        ListenerLabel { listener }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let latency = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let mut m = Metrics {
            registry: Registry::with_prefix("raftkms"),
            term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            append_seconds: latency(),
            append_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            write_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            apply_seconds: latency(),
            forwarded_writes: Counter::default(),
            forward_failures: Counter::default(),
            backups_written: Counter::default(),
            backup_failures: Counter::default(),
            read_gate_waits: Counter::default(),
            read_gate_rounds: Counter::default(),
            read_gate_leased: Counter::default(),
            holder_reads: Counter::default(),
            lease_grants: Counter::default(),
            lease_refusals: Counter::default(),
            lease_grants_from_acks: Counter::default(),
            read_gate_seconds: latency(),
            apply_gate_seconds: latency(),
            stale_reads: Counter::default(),
            scheduler_ticks: Counter::default(),
            scheduler_proposals: Counter::default(),
            tls_reloads: Counter::default(),
            tls_reload_failures: Counter::default(),
            key_pairs_generated: Counter::default(),
            audit_records: Counter::default(),
            audit_refusals: Counter::default(),
            audit_unrecorded: Counter::default(),
            audit_checkpoints: Counter::default(),
            root_key_version: Gauge::default(),
            root_key_pending: Gauge::default(),
            root_key_rewrapped: Counter::default(),
            root_key_rewrap_failures: Counter::default(),
            listeners: ListenerMetrics::default(),
            internal_refusals: Family::default(),
            api: ApiMetrics::default(),
        };
        m.registry = m.registry();
        m
    }

    /// A registry holding every metric under its exported name.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("raftkms");
        self.register_gauges(&mut registry);
        self.register_counters(&mut registry);
        self.register_histograms(&mut registry);
        registry
    }

    fn register_gauges(&self, registry: &mut Registry) {
        let m = self;
        for (name, help, gauge) in [
            ("raft_term", "Current Raft term", &m.term),
            (
                "raft_leader_id",
                "Node id of the known leader (0 = none)",
                &m.leader_id,
            ),
            (
                "raft_is_leader",
                "1 when this node is the leader",
                &m.is_leader,
            ),
            (
                "raft_commit_index",
                "Highest log index known committed",
                &m.commit_index,
            ),
            (
                "raft_applied_index",
                "Highest log index applied to the registry",
                &m.applied_index,
            ),
            (
                "raft_last_log_index",
                "Highest log index in the local log",
                &m.last_log_index,
            ),
            (
                "root_key_version",
                "Current root-key version in this node's registry",
                &m.root_key_version,
            ),
            (
                "root_key_pending_values",
                "Stored values still wrapped under an older root-key version",
                &m.root_key_pending,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
    }

    fn register_counters(&self, registry: &mut Registry) {
        let m = self;
        for (name, help, counter) in [
            (
                "forwarded_writes",
                "Writes this node forwarded to the leader",
                &m.forwarded_writes,
            ),
            (
                "backups_written",
                "Scheduled backups this node wrote into backup.dir",
                &m.backups_written,
            ),
            (
                "backup_failures",
                "Scheduled backups that failed (the reason is in the log)",
                &m.backup_failures,
            ),
            (
                "audit_records",
                "Audit records appended to this node's trail",
                &m.audit_records,
            ),
            (
                "audit_refusals",
                "Requests refused because the audit trail could not record them",
                &m.audit_refusals,
            ),
            (
                "audit_unrecorded",
                "Requests served unrecorded (trail failed, audit.fail-closed = false)",
                &m.audit_unrecorded,
            ),
            (
                "audit_checkpoints",
                "Audit chain heads checkpointed through Raft",
                &m.audit_checkpoints,
            ),
            (
                "root_key_rewrapped",
                "Values this node re-wrapped under the current root-key version, as leader",
                &m.root_key_rewrapped,
            ),
            (
                "root_key_rewrap_failures",
                "Values the re-wrap could not open (left as they are, retried later)",
                &m.root_key_rewrap_failures,
            ),
            (
                "forward_failures",
                "Forwarded writes that failed in transport",
                &m.forward_failures,
            ),
            (
                "read_gate_waits",
                "Linearizable reads that passed the read gate",
                &m.read_gate_waits,
            ),
            (
                "read_gate_rounds",
                "Read-index confirmations (shared by concurrent reads)",
                &m.read_gate_rounds,
            ),
            (
                "holder_reads",
                "Linearizable reads served under this follower's read lease, without the leader",
                &m.holder_reads,
            ),
            (
                "lease_grants",
                "Follower read leases granted or renewed by this node as leader",
                &m.lease_grants,
            ),
            (
                "lease_refusals",
                "Follower lease requests refused by this node as leader (the follower lagged)",
                &m.lease_refusals,
            ),
            (
                "lease_grants_from_acks",
                "Of the lease grants, those dated by acknowledgements of appends already sent, without a confirmation round",
                &m.lease_grants_from_acks,
            ),
            (
                "read_gate_leased",
                "Read indexes the leader answered from its read lease, without a round",
                &m.read_gate_leased,
            ),
            (
                "stale_reads",
                "Reads served from local state without the gate",
                &m.stale_reads,
            ),
            (
                "scheduler_ticks",
                "Scheduler rounds run by this node as leader",
                &m.scheduler_ticks,
            ),
            (
                "scheduler_proposals",
                "Rotations, deletions and expiries the scheduler proposed",
                &m.scheduler_proposals,
            ),
            (
                "tls_reloads",
                "Times the API certificate was reread from its files",
                &m.tls_reloads,
            ),
            (
                "tls_reload_failures",
                "Certificate rereads that failed (the certificate in use was kept)",
                &m.tls_reload_failures,
            ),
            (
                "key_pairs_generated",
                "Asymmetric key pairs generated (CreateKey, GetParametersForImport)",
                &m.key_pairs_generated,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        let l = &m.listeners;
        registry.register(
            "listener_connections_open",
            "Connections open on the listener",
            l.open.clone(),
        );
        registry.register(
            "listener_connections_refused",
            "Connections closed at once: the listener was at max-connections",
            l.refused.clone(),
        );
        registry.register(
            "listener_tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            l.handshake_failures.clone(),
        );
        registry.register(
            "listener_identity_refused",
            "Connections whose verified certificate names no identity of this cluster",
            l.identity_refused.clone(),
        );
        registry.register(
            "internal_requests_refused",
            "Internal requests refused: no or a wrong credential, another cluster, a certificate \
             of the wrong kind, a Raft RPC for another node than the certificate's",
            m.internal_refusals.clone(),
        );
        registry.register(
            "api_requests",
            "Requests answered on the API listener, per dialect",
            m.api.requests.clone(),
        );
        registry.register(
            "listener_connection_errors",
            "Connections that ended in an error or a timeout (header read, idle keep-alive)",
            l.connection_errors.clone(),
        );
    }

    fn register_histograms(&self, registry: &mut Registry) {
        let m = self;
        for (name, help, histogram) in [
            (
                "log_append_seconds",
                "Log append latency, from the write until the WAL fsync that covers it",
                &m.append_seconds,
            ),
            (
                "log_fsync_batch_appends",
                "Appends made durable by one WAL fsync (group commit)",
                &m.append_batch_size,
            ),
            (
                "write_batch_writes",
                "Writes the leader proposed together in one log entry (write batching)",
                &m.write_batch_size,
            ),
            (
                "apply_seconds",
                "Latency of applying one batch of entries",
                &m.apply_seconds,
            ),
            (
                "read_gate_seconds",
                "Time a linearizable read waited at the gate",
                &m.read_gate_seconds,
            ),
            (
                "apply_gate_seconds",
                "Time a batch of committed entries waited to be applied until it was visible (follower read leases)",
                &m.apply_gate_seconds,
            ),
        ] {
            registry.register(name, help, histogram.clone());
        }
        registry.register(
            "api_request_seconds",
            "Latency of requests answered on the API listener, per dialect",
            m.api.seconds.clone(),
        );
    }

    /// Counts an internal request refused for `reason`.
    pub fn internal_refused(&self, reason: &'static str) {
        self.internal_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn api_requests_are_counted_per_bucket_and_exported() {
        let m = Metrics::new();
        m.api.observe("tencent", Duration::from_micros(40));
        m.api.observe("tencent", Duration::from_micros(120));
        m.api.observe("huawei", Duration::from_secs(60));
        let t = m.api.totals();
        assert_eq!(t.requests, 3);
        assert_eq!(t.micros, 60_000_160);
        assert_eq!(t.buckets.len(), API_LATENCY_BOUNDS + 1);
        // 40 µs <= 50 µs; 120 µs <= 200 µs (bucket 2); a minute above every bound.
        assert_eq!(
            (t.buckets[0], t.buckets[2], t.buckets[API_LATENCY_BOUNDS]),
            (1, 1, 1)
        );
        assert_eq!(t.buckets.iter().sum::<u64>(), 3);
        let text = m.render();
        assert!(
            text.contains("raftkms_api_requests_total{dialect=\"tencent\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("raftkms_api_request_seconds_count{dialect=\"huawei\"} 1"),
            "{text}"
        );
    }
}
