//! Multi-region replica keys of a primary key, sharing its KeyId and material.

use super::{one_key, Action, Kms, KmsError, Resource, Scope};
use crate::registry::replica::ReplicaSpec;
use crate::registry::Command;

/// Replicas to make of a primary key; unset fields default to the primary's.
#[derive(Clone, Debug)]
pub struct ReplicateKey {
    pub key_id: String,
    pub regions: Vec<String>,
    pub alias: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<(String, String)>>,
}

/// The replicas made, and when.
#[derive(Clone, Debug)]
pub struct Replicated {
    pub key_id: String,
    pub source_region: String,
    pub replicas: Vec<ReplicaSpec>,
    pub created_at: u64,
}

impl Kms {
    /// Makes replicas of a primary key (in the request's region) in other served regions.
    pub async fn replicate_key(
        &self,
        scope: &Scope,
        req: ReplicateKey,
    ) -> Result<Replicated, KmsError> {
        let resource = one_key(scope, &req.key_id);
        self.seams
            .run(scope, Action::ReplicateKey, resource, async {
                let served = self.node.config().served_regions();
                for r in &req.regions {
                    if !served.contains(r) {
                        return Err(KmsError::UnsupportedDestination {
                            region: r.clone(),
                            served: served.join(", "),
                        });
                    }
                    if r == &scope.region {
                        return Err(KmsError::OwnRegion(r.clone()));
                    }
                    // The replica is a key of the destination region: the caller must be allowed
                    // to replicate there too.
                    self.seams.authorize_also(
                        scope,
                        Action::ReplicateKey,
                        &Resource::Keys {
                            region: r.clone(),
                            key_ids: vec![req.key_id.clone()],
                        },
                    )?;
                }
                // Defaults come from the primary as this node sees it; the material itself is
                // copied by apply from the committed state, never from here.
                self.gate(scope).await?;
                let primary = self.key(scope, &req.key_id)?;
                let replicas: Vec<ReplicaSpec> = req
                    .regions
                    .iter()
                    .map(|r| ReplicaSpec {
                        region: r.clone(),
                        alias: req.alias.clone().unwrap_or_else(|| primary.alias.clone()),
                        description: req
                            .description
                            .clone()
                            .unwrap_or_else(|| primary.description.clone()),
                        tags: req.tags.clone().unwrap_or_else(|| primary.tags.clone()),
                    })
                    .collect();
                let created_at = self
                    .propose(
                        scope,
                        Command::ReplicateKey {
                            uin: scope.caller.uin,
                            key_id: req.key_id.clone(),
                            source_region: scope.region.clone(),
                            replicas: replicas.clone(),
                            cmk_limit: self.node.config().kms.cmk_limit,
                        },
                    )
                    .await?;
                Ok(Replicated {
                    key_id: req.key_id.clone(),
                    source_region: scope.region.clone(),
                    replicas,
                    created_at,
                })
            })
            .await
    }
}
