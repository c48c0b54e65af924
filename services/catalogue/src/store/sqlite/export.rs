//! Exports: a whole listing read in chunks on one reader connection, from one snapshot.

use anyhow::Context;
use tokio::sync::oneshot;
use videostore_kit::sqlite::{
    Pool,
    rusqlite::{Connection, types::ValueRef},
};

use super::sql::{listing, params};
use crate::store::listing::Sql;
use crate::{
    domain::{Filter, ListQuery},
    error::Error,
    store::{ExportSender, WireExport, export_channel},
};

/// The size of an export's chunks: big enough that each is one cheap allocation and one write,
/// small in tests so that films straddle chunks.
pub(super) const EXPORT_CHUNK: usize = if cfg!(test) { 1000 } else { 1 << 20 };

/// An export's read, on a reader connection: the size first, then the films in chunks.
struct Exporter {
    size: Option<oneshot::Sender<Result<Option<usize>, Error>>>,
    chunks: ExportSender,
    /// The runtime the client's end lives on, to wait for it from this blocking thread.
    runtime: tokio::runtime::Handle,
}

impl Exporter {
    fn run(
        &mut self,
        connection: &mut Connection,
        sql: &Sql,
        whole_table: bool,
        max_bytes: usize,
    ) -> Result<(), Error> {
        // One transaction: the size and the films come from one snapshot.
        let transaction = connection.transaction()?;
        if !whole_table {
            // Only the films can tell a filtered export's size: all are read before any is sent.
            let (mut chunks, mut bytes) = (Vec::new(), 0);
            let complete = read_chunks(&transaction, sql, |chunk| {
                bytes += chunk.len();
                chunks.push(chunk);
                // Stop at the limit, or when the caller has gone.
                Ok(bytes <= max_bytes && !self.chunks.is_closed())
            })?;
            if !complete {
                if bytes > max_bytes {
                    self.announce(None);
                }
                return Ok(());
            }
            self.announce(Some(bytes));
            for chunk in chunks {
                if !self.chunks.send_blocking(&self.runtime, Ok(chunk)) {
                    break;
                }
            }
            return Ok(());
        }
        let bytes: i64 =
            transaction.query_row("SELECT bytes FROM wire_bytes", [], |row| row.get(0))?;
        let bytes = usize::try_from(bytes).context("a negative wire total")?;
        if bytes > max_bytes {
            self.announce(None);
            return Ok(());
        }
        self.announce(Some(bytes));
        let mut sent = 0;
        let complete = read_chunks(&transaction, sql, |chunk| {
            sent += chunk.len();
            // The message's length is on its way: a film more than it counts must not follow.
            if sent > bytes {
                return Err(Error::Internal(anyhow::anyhow!(
                    "the films' wire forms are more than their kept total of {bytes} bytes"
                )));
            }
            // Stop when the caller has gone or stalled.
            Ok(self.chunks.send_blocking(&self.runtime, Ok(chunk)))
        })?;
        if complete && sent != bytes {
            return Err(Error::Internal(anyhow::anyhow!(
                "the films' wire forms are {sent} bytes, not their kept total of {bytes}"
            )));
        }
        Ok(())
    }

    fn announce(&mut self, size: Option<usize>) {
        if let Some(sender) = self.size.take() {
            let _ = sender.send(Ok(size));
        }
    }

    /// Tells the caller of a failure: instead of the size if it was not sent yet, else as the
    /// chunks' last item.
    fn fail(&mut self, error: Error) {
        match self.size.take() {
            Some(sender) => {
                let _ = sender.send(Err(error));
            }
            None => {
                let _ = self.chunks.send_blocking(&self.runtime, Err(error));
            }
        }
    }
}

/// The films of `sql` (selecting `wire, id`) in chunks of [`EXPORT_CHUNK`] filled to the brim (a
/// film may continue in the next), each handed to `each`, which says whether to go on. Whether
/// every film was read.
fn read_chunks(
    connection: &Connection,
    sql: &Sql,
    mut each: impl FnMut(Vec<u8>) -> Result<bool, Error>,
) -> Result<bool, Error> {
    let mut chunk = Vec::with_capacity(EXPORT_CHUNK);
    let mut statement = connection.prepare_cached(&sql.text)?;
    let mut rows = statement.query(params(sql))?;
    while let Some(row) = rows.next()? {
        let ValueRef::Blob(mut wire) = row.get_ref(0)? else {
            let id: i64 = row.get(1)?;
            return Err(Error::Internal(anyhow::anyhow!("film {id} has no wire form")));
        };
        while !wire.is_empty() {
            let room = EXPORT_CHUNK - chunk.len();
            let (now, rest) = wire.split_at(room.min(wire.len()));
            chunk.extend_from_slice(now);
            wire = rest;
            if chunk.len() == EXPORT_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK));
                if !each(full)? {
                    return Ok(false);
                }
            }
        }
    }
    if !chunk.is_empty() && !each(chunk)? {
        return Ok(false);
    }
    Ok(true)
}

/// Every film of `query` (its cursor and limit aside) in wire form, as [`WireExport`]: the size,
/// then the films in chunks as they are read; `None` when the size is over `max_bytes`.
pub(super) async fn export(
    reader: Pool,
    query: &ListQuery,
    max_bytes: usize,
) -> Result<Option<WireExport>, Error> {
    let query = ListQuery { after: None, limit: usize::MAX, ..query.clone() };
    let sql = listing("wire, id", &query);
    let whole_table = query.filter == Filter::default();
    let (size_sender, size) = oneshot::channel();
    let (chunk_sender, chunks) = export_channel();
    let (failure_sender, failure) = oneshot::channel();
    let failures = chunk_sender.clone();
    // The read goes on after the size is known, while the films are being sent, a few chunks
    // ahead of the client: it holds its connection while it waits for a slow client, for at most
    // `EXPORT_STALL` per chunk (and the service caps how many exports run at once).
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let job = reader.run(move |connection| {
            let mut exporter = Exporter { size: Some(size_sender), chunks: chunk_sender, runtime };
            if let Err(error) = exporter.run(connection, &sql, whole_table, max_bytes) {
                exporter.fail(error);
            }
        });
        if let Err(error) = job.await {
            // The job and its senders are gone (it panicked, or the pool is closed): the
            // caller hears why here, whether it still waits for the size or reads chunks.
            if let Err(error) = failure_sender.send(error) {
                let _ = failures.send(Err(Error::Internal(error))).await;
            }
        }
    });
    match size.await {
        Ok(Ok(Some(bytes))) => Ok(Some(WireExport { bytes, chunks })),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::Internal(
            failure
                .await
                .unwrap_or_else(|_| anyhow::anyhow!("an export's read ended without a word")),
        )),
    }
}
