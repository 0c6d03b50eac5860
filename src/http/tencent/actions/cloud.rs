//! BindCloudResource, UnbindCloudResource.

use super::{ApiError, Fields, Request};

pub async fn bind_cloud_resource(r: &Request<'_>) -> Result<Fields, ApiError> {
    bind(r, true).await
}

pub async fn unbind_cloud_resource(r: &Request<'_>) -> Result<Fields, ApiError> {
    bind(r, false).await
}

async fn bind(r: &Request<'_>, bind: bool) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let product_id = r.params.str("ProductId")?;
    let resource_id = r.params.str("ResourceId")?;
    r.kms
        .bind_cloud_resource(&r.scope, key_id, product_id, resource_id, bind)
        .await?;
    Ok(Fields::new())
}
