//! Tags of a key or a hosted data key, read and changed after creation: the raftkms extensions
//! GetResourceTags and ModifyResourceTags (Tencent changes tags through its separate tag
//! service, whose API raftkms does not serve). Changing tags needs cluster feature level 2.

use super::{one_key, Action, Kms, KmsError, Resource, Scope};
use crate::config::Consistency;
use crate::registry::data_key::DataKeyOp;
use crate::registry::key::KeyOp;
use crate::registry::Command;

/// What a tag request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tagged {
    Key(String),
    DataKey(String),
}

fn resource(scope: &Scope, target: &Tagged) -> Resource {
    match target {
        Tagged::Key(id) => one_key(scope, id),
        Tagged::DataKey(id) => Resource::DataKeys {
            region: scope.region.clone(),
            data_key_ids: vec![id.clone()],
        },
    }
}

impl Kms {
    /// The tags of the resource, from applied state.
    fn tags_of(&self, scope: &Scope, target: &Tagged) -> Result<Vec<(String, String)>, KmsError> {
        match target {
            Tagged::Key(id) => Ok(self.key(scope, id)?.tags),
            Tagged::DataKey(id) => Ok(self.data_key(scope, id)?.tags),
        }
    }

    /// GetResourceTags.
    pub async fn resource_tags(
        &self,
        scope: &Scope,
        target: Tagged,
    ) -> Result<Vec<(String, String)>, KmsError> {
        self.seams
            .run(scope, Action::GetTags, resource(scope, &target), async {
                self.gate(scope).await?;
                self.tags_of(scope, &target)
            })
            .await
    }

    /// ModifyResourceTags: sets `set` and removes `remove`, all or nothing; the tags after the
    /// change (read back once this node has applied it).
    pub async fn modify_tags(
        &self,
        scope: &Scope,
        target: Tagged,
        set: Vec<(String, String)>,
        remove: Vec<String>,
    ) -> Result<Vec<(String, String)>, KmsError> {
        self.seams
            .run(scope, Action::ModifyTags, resource(scope, &target), async {
                let command = match &target {
                    Tagged::Key(id) => Command::KeyOp {
                        region: scope.region.clone(),
                        uin: scope.caller.uin,
                        key_ids: vec![id.clone()],
                        op: KeyOp::ModifyTags { set, remove },
                    },
                    Tagged::DataKey(id) => Command::DataKeyOp {
                        region: scope.region.clone(),
                        uin: scope.caller.uin,
                        data_key_ids: vec![id.clone()],
                        op: DataKeyOp::ModifyTags { set, remove },
                    },
                };
                self.propose(scope, command).await?;
                self.node
                    .reads()
                    .read_barrier(Consistency::Linearizable)
                    .await?;
                self.tags_of(scope, &target)
            })
            .await
    }
}
