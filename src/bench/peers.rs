//! What one benchmark request is for each system: raftkms (TC3-signed KMS API), OpenBao's transit
//! engine, and etcd's v3 JSON gateway. All three go through a `reqwest` client built with the same
//! settings (HTTP/1.1, keep-alive pool of 64 per host, TCP_NODELAY, 30 s timeout), so the
//! comparison differs only in what the servers do.

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use super::{BenchOptions, Workload};
use crate::client::{KmsClient, KmsError};
use crate::crypto::SecretString;

/// The system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// raftkms: Tencent Cloud KMS API 3.0 with TC3-HMAC-SHA256 signatures.
    Kms,
    /// OpenBao (or Vault) transit engine mounted at transit/, with an X-Vault-Token.
    OpenbaoTransit,
    /// etcd v3 JSON gateway: create = put, every read workload = range of one key.
    Etcd,
}

impl Target {
    /// The request a workload sends to this target (for summaries and docs).
    pub fn operation(self, w: Workload) -> &'static str {
        use Workload::*;
        match (self, w) {
            (_, Mix) => "mix 60/30/9/1",
            (Target::Kms, Encrypt) => "Encrypt",
            (Target::Kms, Decrypt) => "Decrypt",
            (Target::Kms, Datakey) => "GenerateDataKey AES_256",
            (Target::Kms, Create) => "CreateKey",
            (Target::OpenbaoTransit, Encrypt) => "POST /v1/transit/encrypt/<key>",
            (Target::OpenbaoTransit, Decrypt) => "POST /v1/transit/decrypt/<key>",
            (Target::OpenbaoTransit, Datakey) => {
                "POST /v1/transit/datakey/plaintext/<key> bits=256"
            }
            (Target::OpenbaoTransit, Create) => "POST /v1/transit/keys/<new> aes256-gcm96",
            (Target::Etcd, Create) => "POST /v3/kv/put",
            (Target::Etcd, _) => "POST /v3/kv/range",
        }
    }
}

/// What each request needs: a key (KeyId, transit key name or base64 etcd key), a ready
/// ciphertext, and the base64 payload.
pub(super) struct Fixture {
    key_id: String,
    blob: String,
    plaintext: String,
}

impl Fixture {
    /// For writes only (the failover probe): nothing to read back.
    pub(super) fn for_writes(plaintext: String) -> Self {
        Fixture {
            key_id: String::new(),
            blob: String::new(),
            plaintext,
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Sends requests of one target. Cloning shares the connection pool.
#[derive(Clone)]
pub(super) enum Driver {
    Kms { clients: Vec<KmsClient> },
    Http(Arc<HttpDriver>),
}

pub(super) struct HttpDriver {
    http: reqwest::Client,
    bases: Vec<String>,
    token: Option<SecretString>,
    target: Target,
    /// etcd: serializable (local, possibly stale) ranges instead of linearizable ones.
    serializable: bool,
}

fn kms_code(e: KmsError) -> String {
    match e {
        KmsError::Api { code, .. } => code,
        KmsError::Transport(_) => "transport".into(),
        KmsError::BadReply(_) => "bad-reply".into(),
    }
}

/// The raftkms fixture: CreateKey (unless `key_id` is given), then Encrypt of the payload.
async fn kms_setup(
    client: &KmsClient,
    plaintext: String,
    key_id: Option<String>,
) -> anyhow::Result<Fixture> {
    let key_id = match key_id {
        Some(k) => k,
        None => {
            let key = client
                .call(
                    "CreateKey",
                    json!({ "Alias": unique("bench-")[..18].to_string(), "Description": "raftkms bench" }),
                )
                .await?;
            key["KeyId"].as_str().unwrap_or_default().to_string()
        }
    };
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

impl Driver {
    /// An OpenBao or etcd driver; over TLS (an `https://` endpoint) it trusts `--ca`.
    pub(super) fn http(opts: &BenchOptions, token: Option<String>) -> anyhow::Result<Self> {
        // The same settings as `KmsClient::new` / `KmsClient::with_ca`.
        let http = match &opts.ca {
            Some(ca) => crate::client::https_client(ca)?,
            None => crate::client::http_client(),
        };
        let bases = opts
            .endpoints
            .iter()
            .map(|e| {
                let e = e.trim_end_matches('/');
                if e.starts_with("http://") || e.starts_with("https://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        Ok(Driver::Http(Arc::new(HttpDriver {
            http,
            bases,
            token: token.map(SecretString::new),
            target: opts.target,
            serializable: opts.consistency.as_deref() == Some("stale"),
        })))
    }

    pub(super) fn endpoints(&self) -> usize {
        match self {
            Driver::Kms { clients } => clients.len(),
            Driver::Http(h) => h.bases.len(),
        }
    }

    /// Creates (or takes) the key and a ciphertext to decrypt, through the first endpoint.
    pub(super) async fn setup(
        &self,
        plaintext: String,
        key_id: Option<String>,
    ) -> anyhow::Result<Fixture> {
        match self {
            Driver::Kms { clients } => kms_setup(&clients[0], plaintext, key_id).await,
            Driver::Http(h) => match h.target {
                Target::OpenbaoTransit => h.transit_setup(plaintext, key_id).await,
                _ => h.etcd_setup(plaintext, key_id).await,
            },
        }
    }

    /// One request of `op` (not `Mix`) through endpoint `at`; an error is reported by its code.
    pub(super) async fn send(&self, at: usize, op: Workload, f: &Fixture) -> Result<(), String> {
        match self {
            Driver::Kms { clients } => {
                let client = &clients[at % clients.len()];
                let (action, params) = match op {
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
                        json!({ "Alias": unique("bench-"), "Description": "raftkms bench" }),
                    ),
                };
                client
                    .call(action, params)
                    .await
                    .map(|_| ())
                    .map_err(kms_code)
            }
            Driver::Http(h) => {
                let (path, body) = match (h.target, op) {
                    (Target::OpenbaoTransit, Workload::Encrypt | Workload::Mix) => (
                        format!("/v1/transit/encrypt/{}", f.key_id),
                        json!({ "plaintext": f.plaintext }),
                    ),
                    (Target::OpenbaoTransit, Workload::Decrypt) => (
                        format!("/v1/transit/decrypt/{}", f.key_id),
                        json!({ "ciphertext": f.blob }),
                    ),
                    (Target::OpenbaoTransit, Workload::Datakey) => (
                        format!("/v1/transit/datakey/plaintext/{}", f.key_id),
                        json!({ "bits": 256 }),
                    ),
                    (Target::OpenbaoTransit, Workload::Create) => (
                        format!("/v1/transit/keys/{}", unique("bench-")),
                        json!({ "type": "aes256-gcm96" }),
                    ),
                    (_, Workload::Create) => (
                        "/v3/kv/put".to_string(),
                        json!({ "key": b64(&unique("raftkms-bench/")), "value": f.plaintext }),
                    ),
                    (_, _) => (
                        "/v3/kv/range".to_string(),
                        json!({ "key": f.key_id, "serializable": h.serializable }),
                    ),
                };
                h.post(at, &path, &body).await.map(|_| ())
            }
        }
    }
}

impl HttpDriver {
    /// The OpenBao fixture: a transit key (unless `key_id` is given), then an encryption of
    /// the payload under it.
    async fn transit_setup(
        &self,
        plaintext: String,
        key_id: Option<String>,
    ) -> anyhow::Result<Fixture> {
        let key_id = match key_id {
            Some(k) => k,
            None => {
                let name = unique("bench-");
                self.post(
                    0,
                    &format!("/v1/transit/keys/{name}"),
                    &json!({ "type": "aes256-gcm96" }),
                )
                .await
                .map_err(|c| anyhow::anyhow!("creating transit key {name}: {c}"))?;
                name
            }
        };
        let enc = self
            .post(
                0,
                &format!("/v1/transit/encrypt/{key_id}"),
                &json!({ "plaintext": plaintext }),
            )
            .await
            .map_err(|c| anyhow::anyhow!("transit encrypt with {key_id}: {c}"))?;
        let blob = enc["data"]["ciphertext"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("transit encrypt answered {enc}"))?
            .to_string();
        Ok(Fixture {
            key_id,
            blob,
            plaintext,
        })
    }

    /// The etcd fixture: the payload put under a key (`key_id` or a new one) and read back.
    async fn etcd_setup(
        &self,
        plaintext: String,
        key_id: Option<String>,
    ) -> anyhow::Result<Fixture> {
        let key_id = b64(&key_id.unwrap_or_else(|| unique("raftkms-bench/fixture-")));
        self.post(
            0,
            "/v3/kv/put",
            &json!({ "key": key_id, "value": plaintext }),
        )
        .await
        .map_err(|c| anyhow::anyhow!("etcd put: {c}"))?;
        let got = self
            .post(0, "/v3/kv/range", &json!({ "key": key_id }))
            .await
            .map_err(|c| anyhow::anyhow!("etcd range: {c}"))?;
        anyhow::ensure!(
            got["kvs"][0]["value"].as_str() == Some(plaintext.as_str()),
            "etcd range did not return the value just put: {got}"
        );
        Ok(Fixture {
            key_id,
            blob: String::new(),
            plaintext,
        })
    }

    /// POSTs JSON; a non-2xx answer is an error named `http-<status>`.
    async fn post(&self, at: usize, path: &str, body: &Value) -> Result<Value, String> {
        let base = &self.bases[at % self.bases.len()];
        let mut req = self.http.post(format!("{base}{path}")).json(body);
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t.expose());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                "transport".to_string()
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|_| "transport".to_string())?;
        if !status.is_success() {
            return Err(format!("http-{}", status.as_u16()));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|_| "bad-reply".to_string())
    }
}
