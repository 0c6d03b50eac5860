//! Creating, describing, listing and renaming keys.

use super::{one_key, Action, Kms, KmsError, Page, Resource, Scope};
use crate::crypto::asymmetric::AsymmetricSpec;
use crate::registry::iam::Principal;
use crate::registry::key::{KeyOp, KeyRecord, KeyState, KeyUsage, Origin};
use crate::registry::replica::Role;
use crate::registry::{Command, Registry};

/// A new key.
#[derive(Clone, Debug)]
pub struct CreateKey {
    pub alias: String,
    pub description: String,
    pub usage: KeyUsage,
    pub origin: Origin,
    pub tags: Vec<(String, String)>,
}

/// A key as created.
#[derive(Clone, Debug)]
pub struct CreatedKey {
    pub key_id: String,
    pub alias: String,
    pub description: String,
    pub created_at: u64,
    pub state: KeyState,
    pub usage: KeyUsage,
    pub tagged: bool,
}

/// How a key takes part in multi-region replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    Single,
    Primary,
    Replica { primary_region: String },
}

/// A key with its replication role.
#[derive(Clone, Debug)]
pub struct KeyDescription {
    pub key: KeyRecord,
    pub replication: Replication,
    /// The cloud product that created the key (product-managed), or `None`: the user did.
    pub product: Option<String>,
}

/// Which keys a detailed listing returns.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    pub offset: usize,
    pub limit: usize,
    /// Keys the user created (false) or cloud products created on the user's behalf (true).
    pub granted: bool,
    pub newest_last: bool,
    pub state: Option<KeyState>,
    pub alias_or_id_contains: String,
    pub origin: Option<Origin>,
    pub usage: Option<KeyUsage>,
    /// Each (tag key, accepted values; empty = any value) must match.
    pub tags: Vec<(String, Vec<String>)>,
}

fn describe(k: &KeyRecord, registry: &Registry) -> KeyDescription {
    let replication = match registry.replicas().role(&k.region, k.owner_uin, &k.key_id) {
        Role::Single => Replication::Single,
        Role::Primary(_) => Replication::Primary,
        Role::Replica(set) => Replication::Replica {
            primary_region: set.primary_region.clone(),
        },
    };
    KeyDescription {
        key: k.clone(),
        replication,
        product: registry
            .iam()
            .product_of(&k.region, k.owner_uin, &k.key_id)
            .map(str::to_string),
    }
}

/// Whether a key belongs in a listing of product-managed keys (`granted`) or of the user's own.
fn in_listing(registry: &Registry, k: &KeyRecord, granted: bool) -> bool {
    registry
        .iam()
        .product_of(&k.region, k.owner_uin, &k.key_id)
        .is_some()
        == granted
}

impl Kms {
    /// Creates a key in the request's region: material (or a key pair) generated and wrapped on
    /// this node, the record replicated with it.
    pub async fn create_key(&self, scope: &Scope, req: CreateKey) -> Result<CreatedKey, KmsError> {
        let resource = Resource::Account {
            region: scope.region.clone(),
        };
        self.seams
            .run(
                scope,
                Action::CreateKey,
                resource,
                self.create_key_op(scope, req),
            )
            .await
    }

    async fn create_key_op(&self, scope: &Scope, req: CreateKey) -> Result<CreatedKey, KmsError> {
        if req.origin == Origin::External && req.usage != KeyUsage::EncryptDecrypt {
            return Err(KmsError::Unsupported(
                "only ENCRYPT_DECRYPT keys can have imported (EXTERNAL) material".into(),
            ));
        }
        let algorithm = self.node.config().symmetric_algorithm(&scope.region);
        let key_id = uuid::Uuid::new_v4().to_string();
        let now = self.now_secs();
        let uin = scope.caller.uin;
        let cmk_limit = self.node.config().kms.cmk_limit;
        // Before a key pair is generated (an RSA-4096 pair costs seconds of CPU) the quota is
        // checked against the applied keys plus the pairs being generated for the account, so an
        // account at its quota spends none; apply checks it again, authoritatively. Only on
        // caught-up state (a gated scope): a lagging node could count keys already deleted.
        let _creating = match req.usage.asymmetric_spec() {
            Some(_) if req.origin == Origin::TencentKms && scope.gated => {
                Some(self.start_creating(&scope.region, uin, cmk_limit)?)
            }
            _ => None,
        };
        let (versions, public_key) = match (req.origin, req.usage.asymmetric_spec()) {
            (Origin::External, _) => (Vec::new(), Vec::new()),
            (Origin::TencentKms, None) => (
                vec![self
                    .node
                    .keyring()
                    .new_material(algorithm, &key_id, 1, uin)?],
                Vec::new(),
            ),
            (Origin::TencentKms, Some(spec)) => {
                let (material, public) = self.new_key_pair(spec, &key_id, uin).await?;
                (vec![material], public)
            }
        };
        let state = if req.origin == Origin::External {
            KeyState::PendingImport
        } else {
            KeyState::Enabled
        };
        let record = KeyRecord {
            key_id: key_id.clone(),
            region: scope.region.clone(),
            owner_uin: uin,
            alias: req.alias.clone(),
            description: req.description.clone(),
            usage: req.usage,
            algorithm,
            public_key,
            origin: req.origin,
            state,
            created_at: now,
            deletion_date: 0,
            rotation_enabled: false,
            rotate_days: 0,
            last_rotate_time: 0,
            next_rotate_time: 0,
            last_manual_rotate: 0,
            tags: req.tags.clone(),
            versions,
            import: None,
            material_valid_to: 0,
            material_fingerprint: Vec::new(),
        };
        // A role that acts for a cloud product creates product-managed keys.
        let product = match &scope.caller.principal {
            Principal::Identity { kind, name } => self
                .node
                .state()
                .read()
                .registry
                .iam()
                .identity(uin, *kind, name)
                .and_then(|i| i.service.clone()),
            Principal::Root => None,
        };
        let key = Box::new(record);
        let command = match product {
            Some(product) => Command::CreateProductKey {
                key,
                cmk_limit,
                product,
            },
            None => Command::CreateKey { key, cmk_limit },
        };
        self.propose(scope, command).await?;
        scope.note_key(&key_id);
        Ok(CreatedKey {
            key_id,
            alias: req.alias,
            description: req.description,
            created_at: now,
            state,
            usage: req.usage,
            tagged: !req.tags.is_empty(),
        })
    }

    /// Generates a key pair off the async workers (RSA generation takes up to seconds).
    async fn new_key_pair(
        &self,
        spec: AsymmetricSpec,
        key_id: &str,
        uin: u64,
    ) -> Result<(crate::registry::key::MaterialVersion, Vec<u8>), KmsError> {
        // At most one generation per core at a time: a burst of RSA CreateKeys queues here
        // (for a bounded time) instead of taking every blocking thread.
        let permit = self.key_generation_permit().await?;
        let node = self.node.clone();
        let kid = key_id.to_string();
        let pair = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pair = node.keyring().new_key_pair(spec, &kid, uin);
            node.metrics().key_pairs_generated.inc();
            pair
        })
        .await
        .map_err(|e| KmsError::Internal(e.to_string()))??;
        Ok(pair)
    }

    /// One key of the caller.
    pub async fn describe_key(
        &self,
        scope: &Scope,
        key_id: &str,
    ) -> Result<KeyDescription, KmsError> {
        self.seams
            .run(scope, Action::DescribeKey, one_key(scope, key_id), async {
                self.gate(scope).await?;
                let k = self.key(scope, key_id)?;
                let state = self.node.state().read();
                Ok(describe(&k, &state.registry))
            })
            .await
    }

    /// The caller's keys among `key_ids` (unknown ids are left out).
    pub async fn describe_keys(
        &self,
        scope: &Scope,
        key_ids: Vec<String>,
    ) -> Result<Vec<KeyDescription>, KmsError> {
        let resource = Resource::Keys {
            region: scope.region.clone(),
            key_ids: key_ids.clone(),
        };
        self.seams
            .run(scope, Action::DescribeKey, resource, async {
                self.gate(scope).await?;
                let state = self.node.state().read();
                Ok(key_ids
                    .iter()
                    .filter_map(|id| {
                        state
                            .registry
                            .keys()
                            .get(&scope.region, scope.caller.uin, id)
                    })
                    .map(|k| describe(k, &state.registry))
                    .collect())
            })
            .await
    }

    /// Ids of the caller's usable keys (enabled, disabled or pending import), oldest first.
    pub async fn list_keys(
        &self,
        scope: &Scope,
        offset: usize,
        limit: usize,
        granted: bool,
    ) -> Result<Page<String>, KmsError> {
        let resource = Resource::Account {
            region: scope.region.clone(),
        };
        self.seams
            .run(scope, Action::ListKeys, resource, async {
                self.gate(scope).await?;
                let state = self.node.state().read();
                let keys: Vec<&KeyRecord> = state
                    .registry
                    .keys()
                    .list(&scope.region, scope.caller.uin)
                    .into_iter()
                    .filter(|k| {
                        matches!(
                            k.state,
                            KeyState::Enabled | KeyState::Disabled | KeyState::PendingImport
                        ) && in_listing(&state.registry, k, granted)
                    })
                    .collect();
                let items = keys
                    .iter()
                    .skip(offset)
                    .take(limit)
                    .map(|k| k.key_id.clone())
                    .collect();
                Ok(Page {
                    items,
                    total: keys.len(),
                })
            })
            .await
    }

    /// The caller's keys that pass `filter`, described.
    pub async fn list_key_details(
        &self,
        scope: &Scope,
        filter: KeyFilter,
    ) -> Result<Page<KeyDescription>, KmsError> {
        let resource = Resource::Account {
            region: scope.region.clone(),
        };
        self.seams
            .run(scope, Action::ListKeys, resource, async {
                self.gate(scope).await?;
                let state = self.node.state().read();
                let mut keys: Vec<&KeyRecord> =
                    state.registry.keys().list(&scope.region, scope.caller.uin);
                keys.retain(|k| {
                    matches_filter(k, &filter) && in_listing(&state.registry, k, filter.granted)
                });
                if filter.newest_last {
                    keys.reverse();
                }
                let items = keys
                    .iter()
                    .skip(filter.offset)
                    .take(filter.limit)
                    .map(|k| describe(k, &state.registry))
                    .collect();
                Ok(Page {
                    items,
                    total: keys.len(),
                })
            })
            .await
    }

    /// Gives a key a new alias.
    pub async fn update_alias(
        &self,
        scope: &Scope,
        key_id: String,
        alias: String,
    ) -> Result<(), KmsError> {
        let resource = one_key(scope, &key_id);
        self.seams
            .run(scope, Action::UpdateAlias, resource, async {
                self.propose_key_op(scope, vec![key_id], KeyOp::UpdateAlias { alias })
                    .await
                    .map(|_| ())
            })
            .await
    }

    /// Gives a key a new description.
    pub async fn update_description(
        &self,
        scope: &Scope,
        key_id: String,
        description: String,
    ) -> Result<(), KmsError> {
        let resource = one_key(scope, &key_id);
        self.seams
            .run(scope, Action::UpdateDescription, resource, async {
                let op = KeyOp::UpdateDescription { description };
                self.propose_key_op(scope, vec![key_id], op)
                    .await
                    .map(|_| ())
            })
            .await
    }
}

fn matches_filter(k: &KeyRecord, f: &KeyFilter) -> bool {
    f.state.is_none_or(|s| k.state == s)
        && f.origin.is_none_or(|o| k.origin == o)
        && f.usage.is_none_or(|u| k.usage == u)
        && (f.alias_or_id_contains.is_empty()
            || k.alias.contains(&f.alias_or_id_contains)
            || k.key_id.contains(&f.alias_or_id_contains))
        && f.tags.iter().all(|(tk, tv)| {
            k.tags
                .iter()
                .any(|(k2, v2)| k2 == tk && (tv.is_empty() || tv.contains(v2)))
        })
}

/// What the console shows of a key beyond its metadata (`GetKeyDetails`): its material
/// versions, the regions of a multi-region key, and the cloud resources bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDetails {
    /// `(version, created_at)`, newest first. Imported keys have one version per import.
    pub versions: Vec<(u32, u64)>,
    /// The primary's region and the replica regions, when the key is multi-region.
    pub primary_region: Option<String>,
    pub replica_regions: Vec<String>,
    /// `(product_id, resource_id)` of the bindings.
    pub bindings: Vec<(String, String)>,
}

impl Kms {
    /// The caller's key's versions, regions and bindings.
    pub async fn key_details(&self, scope: &Scope, key_id: &str) -> Result<KeyDetails, KmsError> {
        self.seams
            .run(scope, Action::DescribeKey, one_key(scope, key_id), async {
                self.gate(scope).await?;
                let k = self.key(scope, key_id)?;
                let state = self.node.state().read();
                let registry = &state.registry;
                let uin = scope.caller.uin;
                let mut versions: Vec<(u32, u64)> = k
                    .versions
                    .iter()
                    .map(|v| (v.version, v.created_at))
                    .collect();
                versions.sort_by_key(|v| std::cmp::Reverse(v.0));
                let set = registry.replicas().get(uin, &k.key_id);
                Ok(KeyDetails {
                    versions,
                    primary_region: set.map(|s| s.primary_region.clone()),
                    replica_regions: set.map(|s| s.replicas.clone()).unwrap_or_default(),
                    bindings: registry
                        .cloud_bindings()
                        .of_key(&k.region, uin, &k.key_id)
                        .map(|b| (b.product_id.clone(), b.resource_id.clone()))
                        .collect(),
                })
            })
            .await
    }
}
