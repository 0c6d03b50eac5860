//! BindCloudResource and UnbindCloudResource: which cloud products use a key
//! (`registry::cloud_binding`). New in cluster feature level 2: refused with
//! `ClusterError::FeatureNotEnabled` until a rolling upgrade is finalized.

use super::authorize::Action;
use super::{one_key, Kms, KmsError, Scope};
use crate::registry::cloud_binding::{self, CloudBinding};
use crate::registry::Command;

impl Kms {
    /// Records (`bind` true) or removes that product `product_id` uses key `key_id` for its
    /// resource `resource_id`. Binding an existing pair again succeeds; removing an absent one
    /// is refused (`RegistryError::CloudBindingNotFound`).
    pub async fn bind_cloud_resource(
        &self,
        scope: &Scope,
        key_id: String,
        product_id: String,
        resource_id: String,
        bind: bool,
    ) -> Result<(), KmsError> {
        let resource = one_key(scope, &key_id);
        let action = if bind {
            Action::BindCloudResource
        } else {
            Action::UnbindCloudResource
        };
        self.seams
            .run(scope, action, resource, async {
                cloud_binding::validate(&product_id, &resource_id)?;
                let binding = CloudBinding {
                    region: scope.region.clone(),
                    uin: scope.caller.uin,
                    key_id,
                    product_id,
                    resource_id,
                };
                let command = if bind {
                    Command::BindCloudResource { binding }
                } else {
                    Command::UnbindCloudResource { binding }
                };
                self.propose(scope, command).await.map(|_| ())
            })
            .await
    }
}
