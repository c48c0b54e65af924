//! ImportMovies: rows arrive in a client stream, each is checked, and good rows are written in
//! transactions of [`IMPORT_BATCH`], one batch being written while the next is read and
//! checked. Bad rows are counted and explained, never written.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tonic::Streaming;
use videostore_kit::auth::Session;
use videostore_proto::catalogue as pb;

use crate::{
    domain::{MovieFields, RawMovie},
    error::Error,
    service::Catalogue,
    store::Upserted,
};

/// Imported rows are committed in transactions of this many rows.
const IMPORT_BATCH: usize = 5000;
/// Most rejected rows listed in an import summary (all are counted).
const MAX_REJECTED_LISTED: usize = 10_000;
/// Longest external key echoed back with a rejected row.
const MAX_ECHOED_KEY_CHARS: usize = 100;

/// A batch being written; at most one is in flight, so batches commit in stream order.
type Writing = tokio::task::JoinHandle<Result<Vec<Upserted>, Error>>;

/// Reads every row of `stream`, writes the good ones, and sums up what happened.
pub(super) async fn import(
    catalogue: &Arc<Catalogue>,
    staff: &Session,
    mut stream: Streaming<pb::ImportMoviesRequest>,
) -> Result<pb::ImportMoviesResponse, tonic::Status> {
    let mut summary = pb::ImportMoviesResponse::default();
    let mut keys_seen: HashMap<String, i64> = HashMap::new();
    let mut pending: Vec<MovieFields> = Vec::with_capacity(IMPORT_BATCH);
    let mut writing: Option<Writing> = None;
    let mut index: i64 = 0;
    let now = SystemTime::now();
    while let Some(message) = stream.message().await? {
        // The token is checked again at every batch: an import does not outlive it. What was
        // written stays (a batch at a time, each whole); the same import again updates it.
        if let Err(expired) = staff.check(SystemTime::now()) {
            count_written(writing.take(), &mut summary).await?;
            return Err(expired.into());
        }
        for row in message.movies {
            let row_index = index;
            index += 1;
            let external_key = row.external_key.trim().to_owned();
            let fields = match RawMovie::from(&row).validate(now) {
                Ok(fields) => fields,
                Err(reason) => {
                    reject(&mut summary, row_index, &external_key, reason.0);
                    continue;
                }
            };
            if let Some(key) = &fields.external_key {
                if let Some(first) = keys_seen.get(key) {
                    let reason = format!(
                        "external_key {key:?} appears twice in this import (first at row {first})"
                    );
                    reject(&mut summary, row_index, &external_key, reason);
                    continue;
                }
                keys_seen.insert(key.clone(), row_index);
            }
            pending.push(fields);
            if pending.len() >= IMPORT_BATCH {
                count_written(writing.take(), &mut summary).await?;
                let batch = std::mem::replace(&mut pending, Vec::with_capacity(IMPORT_BATCH));
                let catalogue = Arc::clone(catalogue);
                writing =
                    Some(tokio::spawn(async move { catalogue.write_batch(batch, now).await }));
            }
        }
    }
    count_written(writing.take(), &mut summary).await?;
    if !pending.is_empty() {
        count_outcomes(catalogue.write_batch(pending, now).await?, &mut summary);
    }
    Ok(summary)
}

/// Counts a rejected row, and lists it while the list is short enough to send.
fn reject(summary: &mut pb::ImportMoviesResponse, index: i64, external_key: &str, reason: String) {
    summary.rejected_count += 1;
    if summary.rejected.len() < MAX_REJECTED_LISTED {
        // The key is echoed to help find the row, but a rejected key may itself be huge.
        let external_key: String = external_key.chars().take(MAX_ECHOED_KEY_CHARS).collect();
        summary.rejected.push(pb::RejectedRow { index, external_key, reason });
    }
}

/// Waits for the batch being written, if any, and counts what it did.
async fn count_written(
    writing: Option<Writing>,
    summary: &mut pb::ImportMoviesResponse,
) -> Result<(), Error> {
    if let Some(writing) = writing {
        let outcomes = writing.await.map_err(|failed| {
            Error::internal(format!("an import batch task failed: {failed}"))
        })??;
        count_outcomes(outcomes, summary);
    }
    Ok(())
}

fn count_outcomes(outcomes: Vec<Upserted>, summary: &mut pb::ImportMoviesResponse) {
    for outcome in outcomes {
        match outcome {
            Upserted::Created(_) => summary.created += 1,
            Upserted::Updated(_) => summary.updated += 1,
        }
    }
}
