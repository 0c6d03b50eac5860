//! `raftkms bench`: a load generator that signs real TC3 requests and drives Encrypt, Decrypt,
//! GenerateDataKey, CreateKey or a mix against one or more endpoints.
//!
//! Closed loop: N connections, each sends its next request when the previous one answered.
//! Open loop: a fixed rate; latency is measured from each request's *intended* start, so queueing
//! in the client or server is not hidden (no coordinated omission). Latencies go into an HDR
//! histogram; a progress line is printed every second; the summary is a table or JSON.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use crate::client::{KmsClient, KmsError};

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
    pub endpoints: Vec<String>,
    pub region: String,
    pub secret_id: String,
    pub secret_key: String,
    pub workload: Workload,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second for the open loop; `None` = closed loop.
    pub rate: Option<u64>,
    pub payload: usize,
    pub consistency: Option<String>,
    /// Use this existing key instead of creating one.
    pub key_id: Option<String>,
}

/// The result of a run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub workload: Workload,
    pub mode: String,
    pub connections: usize,
    pub payload_bytes: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub throughput: f64,
    pub latency_ms: BTreeMap<String, f64>,
}

struct Shared {
    hist: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn record(&self, started: Instant, result: Result<serde_json::Value, KmsError>) {
        let micros = started.elapsed().as_micros() as u64;
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.record(micros.max(1));
            }
            Err(e) => {
                let code = e
                    .code()
                    .map(str::to_string)
                    .unwrap_or_else(|| "transport".into());
                *self
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(code)
                    .or_default() += 1;
            }
        }
    }
}

/// What each request needs: a key, a ready ciphertext, and the payload.
#[derive(Clone)]
struct Fixture {
    key_id: String,
    blob: String,
    plaintext: String,
}

async fn setup(
    client: &KmsClient,
    payload: usize,
    key_id: Option<String>,
) -> anyhow::Result<Fixture> {
    let key_id = match key_id {
        Some(k) => k,
        None => {
            let alias = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let key = client
                .call(
                    "CreateKey",
                    json!({ "Alias": alias, "Description": "raftkms bench" }),
                )
                .await?;
            key["KeyId"].as_str().unwrap_or_default().to_string()
        }
    };
    let plaintext = base64::engine::general_purpose::STANDARD.encode(vec![0x5a; payload.max(1)]);
    let enc = client
        .call(
            "Encrypt",
            json!({ "KeyId": key_id, "Plaintext": plaintext }),
        )
        .await?;
    let blob = enc["CiphertextBlob"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Fixture {
        key_id,
        blob,
        plaintext,
    })
}

fn request(workload: Workload, n: u64, f: &Fixture) -> (&'static str, serde_json::Value) {
    let pick = match workload {
        Workload::Mix => match n % 100 {
            0..=59 => Workload::Encrypt,
            60..=89 => Workload::Decrypt,
            90..=98 => Workload::Datakey,
            _ => Workload::Create,
        },
        w => w,
    };
    match pick {
        Workload::Encrypt | Workload::Mix => (
            "Encrypt",
            json!({ "KeyId": f.key_id, "Plaintext": f.plaintext }),
        ),
        Workload::Decrypt => ("Decrypt", json!({ "CiphertextBlob": f.blob })),
        Workload::Datakey => (
            "GenerateDataKey",
            json!({ "KeyId": f.key_id, "KeySpec": "AES_256" }),
        ),
        Workload::Create => (
            "CreateKey",
            json!({ "Alias": format!("bench-{}", uuid::Uuid::new_v4().simple()), "Description": "raftkms bench" }),
        ),
    }
}

/// Runs the benchmark, printing a progress line per second to stderr.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Summary> {
    anyhow::ensure!(!opts.endpoints.is_empty(), "no endpoints");
    anyhow::ensure!(opts.connections > 0, "--connections must be at least 1");
    let mut base = KmsClient::new(
        &opts.endpoints[0],
        &opts.region,
        &opts.secret_id,
        &opts.secret_key,
    );
    base.consistency = opts.consistency.clone();
    let clients: Vec<KmsClient> = opts.endpoints.iter().map(|e| base.at(e)).collect();
    let fixture = setup(&clients[0], opts.payload, opts.key_id.clone()).await?;
    let shared = Arc::new(Shared {
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ok: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    });
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + opts.duration;

    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let ok = shared.ok.load(Ordering::Relaxed);
                let errors: u64 = shared
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .sum();
                eprintln!(
                    "[{:>4.0}s] {:>8} ok/s   total ok {ok}   errors {errors}",
                    start.elapsed().as_secs_f64(),
                    ok - last
                );
                last = ok;
            }
        })
    };

    let mut tasks = Vec::new();
    match opts.rate {
        None => {
            for c in 0..opts.connections {
                let client = clients[c % clients.len()].clone();
                let (shared, counter, fixture) = (shared.clone(), counter.clone(), fixture.clone());
                let workload = opts.workload;
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let (action, params) = request(workload, n, &fixture);
                        let t0 = Instant::now();
                        let r = client.call(action, params).await;
                        shared.record(t0, r);
                    }
                }));
            }
        }
        Some(rate) => {
            anyhow::ensure!(rate > 0, "--rate must be at least 1");
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let limit = Arc::new(tokio::sync::Semaphore::new(opts.connections.max(1) * 64));
            let mut n = 0u64;
            loop {
                let intended = start + interval * n as u32;
                if intended >= deadline {
                    break;
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
                let client = clients[(n as usize) % clients.len()].clone();
                let (shared, fixture) = (shared.clone(), fixture.clone());
                let permit = limit.clone().acquire_owned().await?;
                let (action, params) = request(opts.workload, n, &fixture);
                tasks.push(tokio::spawn(async move {
                    // Latency counts from the intended start: time spent waiting to be sent is
                    // part of what a caller would see.
                    let r = client.call(action, params).await;
                    shared.record(intended, r);
                    drop(permit);
                }));
                n += 1;
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    let seconds = start.elapsed().as_secs_f64();
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
    Ok(Summary {
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
    })
}

/// The human summary.
pub fn render(s: &Summary) -> String {
    let mut out = format!(
        "workload {:?}, {}, payload {} B, {:.1} s\n  ok {}   throughput {:.0} req/s\n  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n",
        s.workload,
        s.mode,
        s.payload_bytes,
        s.seconds,
        s.ok,
        s.throughput,
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
