//! The gRPC face of the ledger.
use std::{pin::Pin, sync::Arc, time::SystemTime};

use aes_gcm::aead::{Aead, Payload};
use futures::Stream;
use prost::Message;
use quis_auth::{Principal, Role};
use quis_core::FieldViolation;
use quis_proto::{
    MAX_EVENT_DETAILS_PER_CALL,
    ledger::{
        AppendEventsRequest, AppendEventsResponse, EraseEventDetailRequest, EraseEventDetailResponse,
        GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest, GetConsistencyProofResponse,
        GetEntriesRequest, GetEntriesResponse, GetEventDetailRequest, GetEventDetailResponse, GetEventDetailsRequest,
        GetEventDetailsResponse, GetInclusionProofRequest, GetInclusionProofResponse, LedgerEntry, StoredEntry,
        TailEventsRequest, TailEventsResponse, ledger_service_server::LedgerService,
    },
};
use rand::RngCore;
use tonic::{Request, Response, Status};

use crate::{
    Ledger,
    error::LedgerError,
    hashes::with_hashes,
    store::NewDetail,
    validate::{self, MAX_ENTRY_BYTES, kind_name},
};

/// Entries per `GetEntries` page by default and at most.
const DEFAULT_PAGE: u64 = 256;
const MAX_PAGE: u64 = 1000;

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn internal(e: impl std::fmt::Display) -> Status {
    LedgerError::Internal(e.to_string()).into()
}

/// Checks how a request names one commitment: its digest and the entry holding it.
fn check_detail_key(digest: &[u8], entry_index: Option<u64>, v: &mut Vec<FieldViolation>) {
    if digest.len() != 32 {
        v.push(FieldViolation::new("digest", "must be 32 bytes"));
    }
    if entry_index.is_none() {
        v.push(FieldViolation::new("entry_index", "is required: the index of the entry holding the commitment"));
    }
}

impl Ledger {
    fn may_read(&self, p: &Principal) -> Result<(), Status> {
        let service_reader = p.is_service() && self.config.ledger.reader_services.contains(&p.id);
        if p.has_role(Role::Auditor) || p.has_role(Role::Investigator) || service_reader {
            Ok(())
        } else {
            Err(LedgerError::NotAReader.into())
        }
    }

    /// Auditors, investigators and the services of `ledger.detail_reader_services` open details.
    fn may_read_details(&self, p: &Principal) -> Result<(), Status> {
        let service_reader = p.is_service() && self.config.ledger.detail_reader_services.contains(&p.id);
        if p.has_role(Role::Auditor) || p.has_role(Role::Investigator) || service_reader {
            Ok(())
        } else {
            Err(LedgerError::NotAReader.into())
        }
    }

    fn encrypt_detail(&self, digest: [u8; 32], plain: &[u8]) -> Result<NewDetail, Status> {
        let cipher = &self.details_cipher;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // The digest is bound in: a ciphertext moved to another commitment does not decrypt.
        let ciphertext =
            cipher.encrypt(&aes_gcm::Nonce::from(nonce), Payload { msg: plain, aad: &digest }).map_err(internal)?;
        Ok(NewDetail { digest, nonce, ciphertext })
    }

    fn decrypt_detail(&self, digest: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Result<(Vec<u8>, String), Status> {
        let cipher = &self.details_cipher;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| internal("stored nonce is not 12 bytes"))?;
        let plain = cipher
            .decrypt(&aes_gcm::Nonce::from(nonce), Payload { msg: ciphertext, aad: digest })
            .map_err(|_| internal("a stored detail does not decrypt under its commitment"))?;
        let salt_len = usize::from(*plain.first().ok_or_else(|| internal("empty detail"))?);
        let salt = plain.get(1..1 + salt_len).ok_or_else(|| internal("short detail"))?.to_vec();
        let value = String::from_utf8(plain[1 + salt_len..].to_vec()).map_err(internal)?;
        Ok((salt, value))
    }

    /// The latest checkpoint's size: proofs are only served against signed trees.
    async fn signed_size(&self) -> Result<(u64, String), Status> {
        self.latest_checkpoint().map(|c| (c.size, c.note)).ok_or_else(|| LedgerError::NoCheckpoint.into())
    }
}

/// The gRPC service over the shared ledger state.
pub struct LedgerApi(pub Arc<Ledger>);

impl std::ops::Deref for LedgerApi {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.0
    }
}

type TailStream = Pin<Box<dyn Stream<Item = Result<TailEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn append_events(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        if !principal.is_service() {
            return Err(LedgerError::NotAService.into());
        }
        if let Some(why) = self.halted() {
            return Err(LedgerError::Halted(why.to_string()).into());
        }
        let req = request.into_inner();
        let owned = self.config.ledger.appenders.get(&principal.id).cloned().unwrap_or_default();
        for event in &req.events {
            if let Some(kind) = &event.kind
                && !owned.iter().any(|k| k == kind_name(kind))
            {
                return Err(LedgerError::NotOwner { service: principal.id.clone(), kind: kind_name(kind) }.into());
            }
        }
        let details = validate::check(&req.events, &req.details).map_err(LedgerError::Invalid)?;
        let now = timestamp(self.config.clock.now());
        let mut entries = Vec::with_capacity(req.events.len());
        let mut new_details = Vec::new();
        let mut oversize = Vec::new();
        for (i, (event, event_details)) in req.events.into_iter().zip(details).enumerate() {
            let entry = LedgerEntry { sequence_time: Some(now), appended_by: principal.id.clone(), event: Some(event) };
            let data = entry.encode_to_vec();
            if data.len() > MAX_ENTRY_BYTES {
                oversize.push(FieldViolation::new(format!("events[{i}]"), "the encoded entry exceeds 65535 bytes"));
            }
            for (digest, plain) in event_details {
                new_details.push((i, self.encrypt_detail(digest, &plain)?));
            }
            entries.push(data);
        }
        if !oversize.is_empty() {
            return Err(LedgerError::Invalid(oversize).into());
        }
        let (indices, tree_size) =
            self.sequencer.append(entries, new_details).await.map_err(|_| Status::from(LedgerError::Unavailable))?;
        Ok(Response::new(AppendEventsResponse { indices, tree_size }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        quis_auth::principal(&request)?;
        let latest = self.latest_checkpoint().ok_or(LedgerError::NoCheckpoint)?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: latest.note,
            tree_size: latest.size,
            witnessed: latest.witnessed,
        }))
    }

    async fn get_entries(&self, request: Request<GetEntriesRequest>) -> Result<Response<GetEntriesResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        self.may_read(&principal)?;
        let req = request.into_inner();
        let size = *self.sequencer.size().borrow();
        let mut v = Vec::new();
        let page = match req.page_size {
            0 => DEFAULT_PAGE,
            n @ 1..=1000 => n as u64,
            _ => {
                v.push(FieldViolation::new("page_size", "must be 0 to 1000"));
                0
            }
        };
        let start = if req.page_token.is_empty() {
            req.start_index
        } else {
            match req.page_token.parse::<u64>() {
                Ok(t) if t >= req.start_index && t <= req.end_index => t,
                _ => {
                    v.push(FieldViolation::new(
                        "page_token",
                        "must be a token from a previous response for this range",
                    ));
                    0
                }
            }
        };
        if req.start_index >= req.end_index {
            v.push(FieldViolation::new("end_index", "must be greater than start_index"));
        }
        if !v.is_empty() {
            return Err(LedgerError::Invalid(v).into());
        }
        if req.end_index > size {
            return Err(
                LedgerError::OutOfRange(format!("end_index {} is beyond the tree size {size}", req.end_index)).into()
            );
        }
        let end = req.end_index.min(start + page.min(MAX_PAGE));
        let entries = self.store.read_entries(start, end).await.map_err(internal)?;
        let next_page_token = if end < req.end_index { end.to_string() } else { String::new() };
        Ok(Response::new(GetEntriesResponse {
            entries: entries.into_iter().map(|(index, data)| StoredEntry { index, data }).collect(),
            next_page_token,
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        quis_auth::principal(&request)?;
        let req = request.into_inner();
        let (signed, checkpoint) = self.signed_size().await?;
        let tree_size = if req.tree_size == 0 { signed } else { req.tree_size };
        if tree_size > signed {
            return Err(LedgerError::OutOfRange(format!(
                "tree_size {tree_size} is beyond the latest checkpoint ({signed})"
            ))
            .into());
        }
        if req.index >= tree_size {
            return Err(
                LedgerError::OutOfRange(format!("index {} is not below tree_size {tree_size}", req.index)).into()
            );
        }
        let mut cache = Default::default();
        let proof = with_hashes(&self.store, &mut cache, |r| quis_tlog::prove_record(tree_size, req.index, r))
            .await
            .map_err(internal)?;
        Ok(Response::new(GetInclusionProofResponse {
            index: req.index,
            tree_size,
            hashes: proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        quis_auth::principal(&request)?;
        let req = request.into_inner();
        let (signed, _) = self.signed_size().await?;
        let to = if req.to_size == 0 { signed } else { req.to_size };
        if req.from_size == 0 {
            return Err(LedgerError::Invalid(vec![FieldViolation::new("from_size", "must be at least 1")]).into());
        }
        if req.from_size > to {
            return Err(LedgerError::Invalid(vec![FieldViolation::new("from_size", "must not exceed to_size")]).into());
        }
        if to > signed {
            return Err(
                LedgerError::OutOfRange(format!("to_size {to} is beyond the latest checkpoint ({signed})")).into()
            );
        }
        let mut cache = Default::default();
        let proof = with_hashes(&self.store, &mut cache, |r| quis_tlog::prove_tree(to, req.from_size, r))
            .await
            .map_err(internal)?;
        Ok(Response::new(GetConsistencyProofResponse {
            from_size: req.from_size,
            to_size: to,
            hashes: proof.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_event_detail(
        &self,
        request: Request<GetEventDetailRequest>,
    ) -> Result<Response<GetEventDetailResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        self.may_read_details(&principal)?;
        let GetEventDetailRequest { digest, entry_index } = request.into_inner();
        let mut v = Vec::new();
        check_detail_key(&digest, entry_index, &mut v);
        let (Some(entry_index), true) = (entry_index, v.is_empty()) else {
            return Err(LedgerError::Invalid(v).into());
        };
        let (nonce, ciphertext) =
            self.store.read_detail(entry_index, &digest).await.map_err(internal)?.ok_or(LedgerError::NoDetail)?;
        let (salt, value) = self.decrypt_detail(&digest, &nonce, &ciphertext)?;
        tracing::info!(principal = %principal.id, entry_index, "event detail read");
        Ok(Response::new(GetEventDetailResponse { digest, salt, value, entry_index }))
    }

    async fn get_event_details(
        &self,
        request: Request<GetEventDetailsRequest>,
    ) -> Result<Response<GetEventDetailsResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        self.may_read_details(&principal)?;
        let GetEventDetailsRequest { digests, entry_indexes } = request.into_inner();
        let mut v = Vec::new();
        if digests.is_empty() || digests.len() > MAX_EVENT_DETAILS_PER_CALL {
            v.push(FieldViolation::new("digests", format!("must hold 1 to {MAX_EVENT_DETAILS_PER_CALL} digests")));
        }
        if entry_indexes.len() != digests.len() {
            v.push(FieldViolation::new("entry_indexes", "must hold the entry of each digest, as many as digests"));
        }
        for (i, _) in digests.iter().enumerate().filter(|(_, d)| d.len() != 32) {
            v.push(FieldViolation::new(format!("digests[{i}]"), "must be 32 bytes"));
        }
        if !v.is_empty() {
            return Err(LedgerError::Invalid(v).into());
        }
        let wanted: Vec<(u64, &[u8])> = entry_indexes.iter().copied().zip(digests.iter().map(Vec::as_slice)).collect();
        let found = self.store.read_details(&wanted).await.map_err(internal)?;
        let mut details = Vec::with_capacity(digests.len());
        for (digest, entry_index) in digests.into_iter().zip(entry_indexes) {
            if let Some((nonce, ciphertext)) = found.get(&(entry_index, digest.clone())) {
                let (salt, value) = self.decrypt_detail(&digest, nonce, ciphertext)?;
                details.push(GetEventDetailResponse { digest, salt, value, entry_index });
            }
        }
        tracing::info!(principal = %principal.id, count = details.len(), "event details read");
        Ok(Response::new(GetEventDetailsResponse { details }))
    }

    async fn erase_event_detail(
        &self,
        request: Request<EraseEventDetailRequest>,
    ) -> Result<Response<EraseEventDetailResponse>, Status> {
        let principal = quis_auth::principal(&request)?;
        quis_auth::require_any_role(&principal, &[Role::PrivacyOfficer])?;
        let req = request.into_inner();
        let mut v = Vec::new();
        check_detail_key(&req.digest, req.entry_index, &mut v);
        if req.reason.trim().is_empty() || req.reason.chars().count() > 512 {
            v.push(FieldViolation::new("reason", "must be 1 to 512 characters"));
        }
        let (Some(entry_index), true) = (req.entry_index, v.is_empty()) else {
            return Err(LedgerError::Invalid(v).into());
        };
        if !self.store.erase_detail(entry_index, &req.digest).await.map_err(internal)? {
            return Err(LedgerError::NoDetail.into());
        }
        tracing::warn!(principal = %principal.id, entry_index, reason = %req.reason, "event detail erased");
        Ok(Response::new(EraseEventDetailResponse { entry_index }))
    }

    type TailEventsStream = TailStream;

    async fn tail_events(
        &self,
        request: Request<TailEventsRequest>,
    ) -> Result<Response<Self::TailEventsStream>, Status> {
        let principal = quis_auth::principal(&request)?;
        self.may_read(&principal)?;
        let start = request.into_inner().start_index;
        let store = self.store.clone();
        let mut size = self.sequencer.size();
        let (tx, rx) = tokio::sync::mpsc::channel(DEFAULT_PAGE as usize);
        tokio::spawn(async move {
            let mut next = start;
            loop {
                let durable = *size.borrow_and_update();
                while next < durable {
                    let end = durable.min(next + DEFAULT_PAGE);
                    let entries = match store.read_entries(next, end).await {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = tx.send(Err(internal(e))).await;
                            return;
                        }
                    };
                    for (index, data) in entries {
                        if tx.send(Ok(TailEventsResponse { entry: Some(StoredEntry { index, data }) })).await.is_err() {
                            return; // the consumer went away
                        }
                    }
                    next = end;
                }
                tokio::select! {
                    changed = size.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
