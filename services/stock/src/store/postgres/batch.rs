//! Rents and returns that queue while the one before is in the database go to it together, in
//! one statement: one commit for all of them.
//!
//! A statement costs PostgreSQL about the same for one rent as for sixteen (planning, executor
//! set-up, the commit's flush), and that cost was what bounded rentals on this machine's two
//! cores. In the database alone (docs/bench/pgbench-batch.sql), sixteen rents to a statement
//! at three connections made 7,100–8,700 rent+return pairs a second against 2,700–2,800 for one
//! to a statement.
//!
//! Each replica keeps one batch of each kind in flight: the calls that arrive meanwhile make the
//! next one. Under light load a batch holds one call, which runs the single-call statement, so
//! nothing waits for company. A batch that fails as a whole (a customer over a cap, a request id
//! used twice in it, a deadlock) was rolled back whole, and its calls are then made one by one,
//! so each gets its own answer.

use std::{future::Future, sync::Arc};

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;

/// At most this many calls to one statement. Past this the statement's own work (a row each)
/// outweighs the per-statement cost it shares.
pub(super) const MOST: usize = 32;

/// A call waiting for its batch, and where its answer goes.
type Job<Call, Answer> = (Call, oneshot::Sender<Result<Answer, Error>>);

/// Runs calls of one kind in batches, one batch at a time.
pub(super) struct Batcher<Call, Answer> {
    queue: mpsc::UnboundedSender<Job<Call, Answer>>,
}

impl<Call, Answer> Batcher<Call, Answer>
where
    Call: Send + 'static,
    Answer: Send + 'static,
{
    /// Starts the task that runs the batches with `run`, which answers each call of a batch in
    /// order. The task ends when the batcher is dropped.
    pub(super) fn start<Run, Ran>(run: Run) -> Arc<Self>
    where
        Run: Fn(Vec<Call>) -> Ran + Send + 'static,
        Ran: Future<Output = Vec<Result<Answer, Error>>> + Send,
    {
        let (queue, mut calls) = mpsc::unbounded_channel::<Job<Call, Answer>>();
        tokio::spawn(async move {
            while let Some(first) = calls.recv().await {
                let mut batch = vec![first];
                while batch.len() < MOST {
                    match calls.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (batch, answer_to): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let answers = run(batch).await;
                debug_assert_eq!(answers.len(), answer_to.len(), "one answer per call");
                for (answer, to) in answers.into_iter().zip(answer_to) {
                    // A caller that went away meanwhile: its retry finds what was made.
                    let _ = to.send(answer);
                }
            }
        });
        Arc::new(Self { queue })
    }

    /// Makes `call` in the next batch.
    pub(super) async fn call(&self, call: Call) -> Result<Answer, Error> {
        let (answer_to, answer) = oneshot::channel();
        let stopped = || Error::Internal(anyhow::anyhow!("the batching task of the store stopped"));
        self.queue.send((call, answer_to)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}
