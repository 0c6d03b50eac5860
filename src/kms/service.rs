//! The service itself: quota use, served regions, algorithms.

use super::{Action, Kms, KmsError, Resource, Scope};
use crate::crypto::SymmetricAlgorithm;

/// The caller's key quota in the request's region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub used: usize,
    pub limit: usize,
    /// Hosted data keys counting against their quota, and that quota.
    pub data_keys_used: usize,
    pub data_key_limit: usize,
}

impl Kms {
    /// How many keys the caller has in the request's region, and may have.
    pub async fn service_status(&self, scope: &Scope) -> Result<Quota, KmsError> {
        let resource = Resource::Account {
            region: scope.region.clone(),
        };
        self.seams
            .run(scope, Action::GetServiceStatus, resource, async {
                self.gate(scope).await?;
                let used = self
                    .node
                    .state()
                    .read()
                    .registry
                    .keys()
                    .count(&scope.region, scope.caller.uin);
                let (data_keys_used, data_key_limit) = self.data_key_quota(scope);
                Ok(Quota {
                    used,
                    limit: self.node.config().kms.cmk_limit as usize,
                    data_keys_used,
                    data_key_limit,
                })
            })
            .await
    }

    /// The regions this cluster serves.
    pub async fn regions(&self, scope: &Scope) -> Result<Vec<String>, KmsError> {
        self.seams
            .run(scope, Action::ListRegions, Resource::Service, async {
                Ok(self.node.config().served_regions())
            })
            .await
    }

    /// The symmetric algorithm of keys in the request's region.
    pub async fn symmetric_algorithm(&self, scope: &Scope) -> Result<SymmetricAlgorithm, KmsError> {
        self.seams
            .run(scope, Action::ListAlgorithms, Resource::Service, async {
                Ok(self.node.config().symmetric_algorithm(&scope.region))
            })
            .await
    }
}
