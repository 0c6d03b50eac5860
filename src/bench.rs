//! `raftkms bench`: a load generator that signs real TC3 requests and drives Encrypt, Decrypt,
//! GenerateDataKey, CreateKey or a mix against one or more endpoints.
//!
//! The same generator (same connection pool settings, same loops, same histogram) also drives the
//! systems raftkms is compared with, so every figure of `benches/compare.sh` is measured the same
//! way: OpenBao's transit engine (`--target openbao-transit`) and etcd's v3 JSON gateway
//! (`--target etcd`, puts for "create", ranges for the reads). See [`peers`].
//!
//! Closed loop: N connections, each sends its next request when the previous one answered.
//! Open loop: a fixed rate; latency is measured from each request's *intended* start, so queueing
//! in the client or server is not hidden (no coordinated omission). Latencies go into an HDR
//! histogram; a progress line is printed every second; the summary is a table or JSON.
//!
//! [`failover`] is the probe of the failover series: it SIGKILLs a given process (the leader) and
//! times the first acknowledged write through the surviving endpoints.

mod peers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::KmsClient;
pub use peers::Target;
use peers::{Driver, Fixture};

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Encrypt,
    Decrypt,
    Datakey,
    Create,
    /// 60 % Encrypt, 30 % Decrypt, 9 % GenerateDataKey, 1 % CreateKey.
    Mix,
}

/// Options of one run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub target: Target,
    pub endpoints: Vec<String>,
    pub region: String,
    /// TC3 credential (`--target kms` only).
    pub secret_id: Option<String>,
    pub secret_key: Option<crate::crypto::SecretString>,
    /// The CA file `https://` endpoints chain to (`--target kms`).
    pub ca: Option<std::path::PathBuf>,
    /// X-Vault-Token (`--target openbao-transit` only).
    pub token: Option<String>,
    pub workload: Workload,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second for the open loop; `None` = closed loop.
    pub rate: Option<u64>,
    pub payload: usize,
    /// `stale` sends X-Raftkms-Consistency: stale (kms) or a serializable range (etcd).
    pub consistency: Option<String>,
    /// Use this existing key (KeyId, transit key name, etcd key) instead of creating one.
    pub key_id: Option<String>,
    /// Stop after this many requests (or at the end of `duration`, whichever comes first).
    pub max_requests: Option<u64>,
}

// The arguments of the `bench` subcommand (no doc comment here, so that the subcommand's own
// text stays its help). Every field but `failover_kill_pid` and `json` is an option of the run;
// `From<BenchArgs> for BenchOptions` is the one place that converts them.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// System to drive: raftkms (kms), OpenBao transit (openbao-transit) or etcd's JSON gateway
    /// (etcd: create = put, reads = range), all with the same client settings.
    #[arg(long, value_enum, default_value = "kms")]
    pub target: Target,
    /// API endpoints (comma-separated); default KMS_ENDPOINTS from dev.env.
    #[arg(long, env = "KMS_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    #[arg(long, env = "KMS_REGION", default_value = "ap-guangzhou")]
    pub region: String,
    #[arg(long, env = "KMS_SECRET_ID", hide_env_values = true)]
    pub secret_id: Option<String>,
    #[arg(long, env = "KMS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<crate::crypto::SecretString>,
    /// CA file for https:// endpoints; default KMS_CA_BUNDLE from dev.env.
    #[arg(long, env = "KMS_CA_BUNDLE")]
    pub ca: Option<std::path::PathBuf>,
    /// OpenBao token (--target openbao-transit).
    #[arg(long, env = "BAO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Stop after this many requests (default: run for --duration).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Failover probe instead of a load run: SIGKILL this pid, then start a write ("create")
    /// through the endpoints every 10 ms until one is acknowledged; prints the time in ms.
    #[arg(long)]
    pub failover_kill_pid: Option<i32>,
    #[arg(long, value_enum, default_value = "encrypt")]
    pub workload: Workload,
    /// Concurrent connections (closed loop) or the in-flight cap factor (open loop).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Plaintext size in bytes for Encrypt/Decrypt.
    #[arg(long, default_value_t = 32)]
    pub payload: usize,
    /// Send X-Raftkms-Consistency: stale.
    #[arg(long)]
    pub stale: bool,
    /// Use this existing key (default: create one per run).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

impl From<BenchArgs> for BenchOptions {
    fn from(a: BenchArgs) -> Self {
        BenchOptions {
            target: a.target,
            endpoints: a.endpoints,
            region: a.region,
            secret_id: a.secret_id,
            secret_key: a.secret_key,
            ca: a.ca.filter(|p| !p.as_os_str().is_empty()),
            token: a.token,
            workload: a.workload,
            connections: a.connections,
            duration: Duration::from_secs(a.duration),
            rate: a.rate,
            payload: a.payload,
            consistency: a.stale.then(|| "stale".to_string()),
            key_id: a.key_id,
            max_requests: a.requests,
        }
    }
}

/// The result of a run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub target: Target,
    pub workload: Workload,
    pub mode: String,
    pub connections: usize,
    pub payload_bytes: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub throughput: f64,
    pub latency_ms: BTreeMap<String, f64>,
    /// CPU time (user + system) the load generator itself used during the run.
    pub client_cpu_ms: f64,
}

struct Shared {
    hist: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn new() -> anyhow::Result<Self> {
        Ok(Shared {
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
            ok: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    fn record(&self, started: Instant, result: Result<(), String>) {
        let micros = started.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.record(micros.max(1));
            }
            Err(code) => {
                *self
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(code)
                    .or_default() += 1;
            }
        }
    }

    fn error_total(&self) -> u64 {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}

/// CPU time (user + system) of this process so far, in ms.
fn own_cpu_ms() -> f64 {
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass, which outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// The operation request number `n` performs (the mix is deterministic in `n`).
fn pick(workload: Workload, n: u64) -> Workload {
    match workload {
        Workload::Mix => match n % 100 {
            0..=59 => Workload::Encrypt,
            60..=89 => Workload::Decrypt,
            90..=98 => Workload::Datakey,
            _ => Workload::Create,
        },
        w => w,
    }
}

fn driver(opts: &BenchOptions) -> anyhow::Result<Driver> {
    anyhow::ensure!(!opts.endpoints.is_empty(), "no endpoints");
    match opts.target {
        Target::Kms => {
            let (Some(id), Some(key)) = (&opts.secret_id, &opts.secret_key) else {
                anyhow::bail!("--target kms needs --secret-id and --secret-key (or KMS_SECRET_ID/KMS_SECRET_KEY)");
            };
            let mut base = KmsClient::new(&opts.endpoints[0], &opts.region, id, key.expose());
            if let Some(ca) = &opts.ca {
                base = base.with_ca(ca)?;
            }
            base.consistency = opts.consistency.clone();
            Ok(Driver::Kms {
                clients: opts.endpoints.iter().map(|e| base.at(e)).collect(),
            })
        }
        Target::OpenbaoTransit => {
            let Some(token) = &opts.token else {
                anyhow::bail!("--target openbao-transit needs --token (or BAO_TOKEN)");
            };
            Driver::http(opts, Some(token.clone()))
        }
        Target::Etcd => Driver::http(opts, None),
    }
}

/// What the request loops of one run share.
struct Load {
    driver: Driver,
    fixture: Arc<Fixture>,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
}

/// Runs the benchmark, printing a progress line per second to stderr.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Summary> {
    anyhow::ensure!(opts.connections > 0, "--connections must be at least 1");
    let driver = driver(&opts)?;
    let plaintext =
        base64::engine::general_purpose::STANDARD.encode(vec![0x5a; opts.payload.max(1)]);
    let fixture: Fixture = driver.setup(plaintext, opts.key_id.clone()).await?;
    let shared = Arc::new(Shared::new()?);
    let cpu0 = own_cpu_ms();
    let start = Instant::now();
    let load = Load {
        driver,
        fixture: Arc::new(fixture),
        shared: shared.clone(),
        start,
        deadline: start + opts.duration,
    };
    let progress = spawn_progress(shared.clone(), start);
    let tasks = match opts.rate {
        None => closed_loop(&load, &opts),
        Some(rate) => open_loop(&load, &opts, rate).await?,
    };
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    let seconds = start.elapsed().as_secs_f64();
    Ok(summarize(&opts, &shared, seconds, own_cpu_ms() - cpu0))
}

/// Prints the requests answered in the last second, the total and the errors, every second
/// until aborted.
fn spawn_progress(shared: Arc<Shared>, start: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let ok = shared.ok.load(Ordering::Relaxed);
            eprintln!(
                "[{:>4.0}s] {:>8} ok/s   total ok {ok}   errors {}",
                start.elapsed().as_secs_f64(),
                ok - last,
                shared.error_total()
            );
            last = ok;
        }
    })
}

/// The closed loop: `connections` tasks, each sending its next request (through its own
/// endpoint) when the previous one answered, until the deadline or `max_requests`.
fn closed_loop(load: &Load, opts: &BenchOptions) -> Vec<tokio::task::JoinHandle<()>> {
    let counter = Arc::new(AtomicU64::new(0));
    let endpoints = load.driver.endpoints();
    let deadline = load.deadline;
    let mut tasks = Vec::new();
    for c in 0..opts.connections {
        let (driver, shared, counter, fixture) = (
            load.driver.clone(),
            load.shared.clone(),
            counter.clone(),
            load.fixture.clone(),
        );
        let workload = opts.workload;
        let max_requests = opts.max_requests.unwrap_or(u64::MAX);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests {
                    break;
                }
                let t0 = Instant::now();
                let r = driver
                    .send(c % endpoints, pick(workload, n), &fixture)
                    .await;
                shared.record(t0, r);
            }
        }));
    }
    tasks
}

/// The open loop: request `n` is started at `start + n / rate` (the endpoints in turn), with
/// at most `connections * 64` in flight, until the deadline or `max_requests`; its latency
/// counts from that intended start.
async fn open_loop(
    load: &Load,
    opts: &BenchOptions,
    rate: u64,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    anyhow::ensure!(rate > 0, "--rate must be at least 1");
    let endpoints = load.driver.endpoints();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let limit = Arc::new(tokio::sync::Semaphore::new(opts.connections.max(1) * 64));
    let mut tasks = Vec::new();
    let mut n = 0u64;
    loop {
        let intended = load.start + interval.mul_f64(n as f64);
        if intended >= load.deadline || Some(n) == opts.max_requests {
            break;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
        let (driver, shared, fixture) = (
            load.driver.clone(),
            load.shared.clone(),
            load.fixture.clone(),
        );
        let permit = limit.clone().acquire_owned().await?;
        let op = pick(opts.workload, n);
        let at = (n as usize) % endpoints;
        tasks.push(tokio::spawn(async move {
            // Latency counts from the intended start: time spent waiting to be sent is
            // part of what a caller would see.
            let r = driver.send(at, op, &fixture).await;
            shared.record(intended, r);
            drop(permit);
        }));
        n += 1;
    }
    Ok(tasks)
}

/// The summary of a finished run from what the loops recorded.
fn summarize(opts: &BenchOptions, shared: &Shared, seconds: f64, client_cpu_ms: f64) -> Summary {
    let hist = shared
        .hist
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let ok = shared.ok.load(Ordering::Relaxed);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let latency_ms = BTreeMap::from([
        ("p50".to_string(), ms(0.50)),
        ("p90".to_string(), ms(0.90)),
        ("p99".to_string(), ms(0.99)),
        ("p99.9".to_string(), ms(0.999)),
        ("max".to_string(), hist.max() as f64 / 1000.0),
    ]);
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Summary {
        target: opts.target,
        workload: opts.workload,
        mode: match opts.rate {
            None => format!("closed loop, {} connections", opts.connections),
            Some(r) => format!("open loop, {r} req/s"),
        },
        connections: opts.connections,
        payload_bytes: opts.payload,
        seconds,
        ok,
        errors,
        throughput: ok as f64 / seconds,
        latency_ms,
        client_cpu_ms,
    }
}

/// The human summary.
pub fn render(s: &Summary) -> String {
    let mut out = format!(
        "target {:?}, workload {:?} ({}), {}, payload {} B, {:.1} s\n  ok {}   throughput {:.0} req/s   client CPU {:.0} ms\n  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
        s.target,
        s.workload,
        s.target.operation(s.workload),
        s.mode,
        s.payload_bytes,
        s.seconds,
        s.ok,
        s.throughput,
        s.client_cpu_ms,
        s.latency_ms["p50"],
        s.latency_ms["p90"],
        s.latency_ms["p99"],
        s.latency_ms["p99.9"],
        s.latency_ms["max"]
    );
    if s.errors.is_empty() {
        out.push_str("  errors: none\n");
    } else {
        for (code, n) in &s.errors {
            out.push_str(&format!("  errors {code}: {n}\n"));
        }
    }
    out
}

/// The result of one failover probe.
#[derive(Debug, Serialize)]
pub struct FailoverResult {
    pub target: Target,
    pub killed_pid: i32,
    /// From the SIGKILL to the first acknowledged write, ms.
    pub ms: f64,
    pub attempts: u64,
    /// Refused or failed attempts before the first acknowledged write, by code.
    pub errors: BTreeMap<String, u64>,
    /// The endpoint that acknowledged it.
    pub acknowledged_by: String,
}

/// SIGKILLs `pid`, then starts a write ("create": CreateKey, a transit key, an etcd put) through
/// the endpoints in turn every `every` (each attempt bounded by `attempt_timeout`; attempts keep
/// being started while earlier ones hang) until one is acknowledged, or fails after `limit`.
pub async fn failover(
    opts: BenchOptions,
    pid: i32,
    every: Duration,
    attempt_timeout: Duration,
    limit: Duration,
) -> anyhow::Result<FailoverResult> {
    anyhow::ensure!(pid > 1, "refusing to kill pid {pid}");
    let driver = driver(&opts)?;
    let plaintext =
        base64::engine::general_purpose::STANDARD.encode(vec![0x5a; opts.payload.max(1)]);
    let fixture = Arc::new(Fixture::for_writes(plaintext));
    // Enough permits that attempts never stop being started while earlier ones hang (a follower
    // may hold a write until a new leader exists): one per `every` for `attempt_timeout`.
    let cap = (attempt_timeout.as_millis() / every.as_millis().max(1) + 1).min(1024) as usize;
    let inflight = Arc::new(tokio::sync::Semaphore::new(cap));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<(), String>)>();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut attempts = 0u64;
    let t0 = Instant::now();
    // SAFETY: kill(2) with a pid the caller named; no memory is involved.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        anyhow::bail!("cannot kill pid {pid}: {}", std::io::Error::last_os_error());
    }
    let mut tick = tokio::time::interval(every);
    let mut tasks = tokio::task::JoinSet::new();
    let result = loop {
        if t0.elapsed() > limit {
            break None;
        }
        tokio::select! {
            _ = tick.tick() => {
                if let Ok(permit) = inflight.clone().try_acquire_owned() {
                    let at = (attempts as usize) % driver.endpoints();
                    attempts += 1;
                    let (driver, fixture, tx) = (driver.clone(), fixture.clone(), tx.clone());
                    tasks.spawn(async move {
                        let r = match tokio::time::timeout(
                            attempt_timeout,
                            driver.send(at, Workload::Create, &fixture),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err("attempt-timeout".to_string()),
                        };
                        let _ = tx.send((at, r));
                        drop(permit);
                    });
                }
            }
            Some((at, r)) = rx.recv() => match r {
                Ok(()) => break Some((t0.elapsed(), at)),
                Err(code) => *errors.entry(code).or_default() += 1,
            }
        }
    };
    tasks.abort_all();
    let Some((elapsed, at)) = result else {
        anyhow::bail!(
            "no write acknowledged within {:.0} s after killing pid {pid} ({attempts} attempts, errors {errors:?})",
            limit.as_secs_f64()
        );
    };
    Ok(FailoverResult {
        target: opts.target,
        killed_pid: pid,
        ms: elapsed.as_secs_f64() * 1000.0,
        attempts,
        errors,
        acknowledged_by: opts.endpoints.get(at).cloned().unwrap_or_default(),
    })
}
