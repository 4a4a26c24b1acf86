//! Key administration (the `admin` role): which key-encryption keys wrap how
//! many data keys, and re-wrapping them under the active one in batches.
use quis_auth::Role;
use quis_proto::vault as v;
use quis_vault::{VaultError, keyring::Keyring};

use crate::{
    convert::page_size,
    error::ServiceError,
    service::{CallerInfo, Inner},
};

impl Inner {
    pub async fn list_encryption_keys(
        &self,
        caller: &CallerInfo,
        req: v::ListEncryptionKeysRequest,
    ) -> Result<v::ListEncryptionKeysResponse, ServiceError> {
        caller.require(Role::Admin)?;
        let size = page_size("page_size", req.page_size, 100, 100)?;
        let keys = self.vault.key_usage().await?;
        if !req.page_token.is_empty() && !keys.iter().any(|k| k.kek_id == req.page_token) {
            return Err(ServiceError::invalid("page_token", "must be a token from a previous response"));
        }
        let after: Vec<_> =
            keys.into_iter().filter(|k| req.page_token.is_empty() || k.kek_id > req.page_token).collect();
        let more = after.len() > size;
        let page: Vec<v::EncryptionKey> = after
            .into_iter()
            .take(size)
            .map(|k| v::EncryptionKey { key_id: k.kek_id, active: k.active, wrapped_data_keys: k.wrapped_data_keys })
            .collect();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.key_id.clone(),
            _ => String::new(),
        };
        Ok(v::ListEncryptionKeysResponse { keys: page, next_page_token })
    }

    /// Loads the key files again first, so that a KEK added to the key
    /// directory becomes active, and one destroyed after a finished rotation is dropped.
    pub async fn rotate_keys(
        &self,
        caller: &CallerInfo,
        req: v::RotateKeysRequest,
    ) -> Result<v::RotateKeysResponse, ServiceError> {
        caller.require(Role::Admin)?;
        let batch = page_size("batch_size", req.batch_size, 1000, 10_000)?;
        let keyring = Keyring::load(&self.data_dir, &self.keys, false).map_err(VaultError::from)?;
        let progress = self.vault.rotate_keys(keyring, batch).await?;
        tracing::info!(actor = %caller.principal.id, active = %progress.active_kek, rewrapped = progress.rewrapped, remaining = progress.remaining, "data keys re-wrapped");
        Ok(v::RotateKeysResponse {
            active_key_id: progress.active_kek,
            rewrapped: i64::try_from(progress.rewrapped).unwrap_or(i64::MAX),
            remaining: i64::try_from(progress.remaining).unwrap_or(i64::MAX),
        })
    }
}
