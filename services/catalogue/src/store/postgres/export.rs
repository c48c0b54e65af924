//! An export's read, in one REPEATABLE READ transaction: the total size, then the films.

use anyhow::Context;
use futures::{StreamExt, pin_mut};
use tokio::sync::oneshot;
use videostore_kit::postgres::{Connection, tokio_postgres::IsolationLevel};

use super::{
    EXPORT_CHUNK,
    rows::{borrowed, params},
};
use crate::{
    error::Error,
    store::{ExportSender, listing::Sql},
};

/// An export's read: the size first (through `size`), then the films in chunks.
pub(super) async fn export(
    mut client: Connection,
    sql: Sql,
    whole_table: bool,
    max_bytes: usize,
    size: oneshot::Sender<Result<Option<usize>, Error>>,
    chunks: ExportSender,
) -> Result<(), Error> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The kept total first: a connection answers one query at a time, in order.
    let total: Option<i64> = if whole_table {
        Some(transaction.query_one("SELECT bytes FROM wire_bytes", &[]).await?.get(0))
    } else {
        None
    };
    let params = params(&sql);
    let rows = transaction.query_raw(&sql.text, borrowed(&params)).await?;
    pin_mut!(rows);
    let mut chunk = Vec::with_capacity(EXPORT_CHUNK.min(max_bytes.saturating_add(1)));
    let Some(total) = total else {
        // Only the films can tell a filtered export's size: all are read before any is sent.
        let mut read = Vec::new();
        let mut bytes = 0;
        while let Some(row) = rows.next().await {
            let row = row?;
            let wire: &[u8] = row.get(0);
            bytes += wire.len();
            if bytes > max_bytes {
                let _ = size.send(Ok(None));
                return Ok(());
            }
            fill(&mut chunk, &mut read, wire);
            if chunks.is_closed() {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            read.push(chunk);
        }
        let _ = size.send(Ok(Some(bytes)));
        for piece in read {
            if !chunks.send(Ok(piece)).await {
                break;
            }
        }
        return Ok(());
    };
    let total = usize::try_from(total).context("a negative wire total")?;
    if total > max_bytes {
        let _ = size.send(Ok(None));
        return Ok(());
    }
    let _ = size.send(Ok(Some(total)));
    let mut sent = 0;
    let mut full = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let wire: &[u8] = row.get(0);
        sent += wire.len();
        if sent > total {
            let _ = chunks
                .send(Err(Error::internal(format!(
                    "the films' wire forms are more than their kept total of {total} bytes"
                ))))
                .await;
            return Ok(());
        }
        fill(&mut chunk, &mut full, wire);
        for piece in full.drain(..) {
            if !chunks.send(Ok(piece)).await {
                return Ok(()); // The caller has gone or stalled.
            }
        }
    }
    if !chunk.is_empty() && !chunks.send(Ok(chunk)).await {
        return Ok(());
    }
    if sent != total {
        let _ = chunks
            .send(Err(Error::internal(format!(
                "the films' wire forms are {sent} bytes, not their kept total of {total}"
            ))))
            .await;
    }
    Ok(())
}

/// Appends `wire` to `chunk`, moving every chunk filled to [`EXPORT_CHUNK`] into `full`.
pub(super) fn fill(chunk: &mut Vec<u8>, full: &mut Vec<Vec<u8>>, mut wire: &[u8]) {
    while !wire.is_empty() {
        let room = EXPORT_CHUNK - chunk.len();
        let (now, rest) = wire.split_at(room.min(wire.len()));
        chunk.extend_from_slice(now);
        wire = rest;
        if chunk.len() == EXPORT_CHUNK {
            full.push(std::mem::replace(chunk, Vec::with_capacity(EXPORT_CHUNK)));
        }
    }
}
