//! Password hashing with Argon2id (memory-hard), run off the async threads on a few dedicated
//! threads of its own.
//!
//! Argon2 needs a big block of memory per run. Each password thread (one per core, at most four)
//! keeps one block and reuses it for every run, so the memory is bounded (threads × the block),
//! nothing is allocated per run, and a flood of sign-ins queues instead of taking the machine's
//! memory. (Allocated per run on tokio's blocking pool instead, glibc keeps each freed block in
//! that thread's arena, and the service grows with every blocking thread that ever hashed.)
//!
//! New hashes use OWASP's Argon2id setting m = 7 MiB, t = 5, p = 1 (as strong as the crate's
//! default m = 19 MiB, t = 2, with a third of the memory); stored hashes verify with whatever
//! parameters they carry.
//!
//! Argon2 is a CPU amplifier, so the queue in front of the threads is bounded: when it is full a
//! sign-in or registration is refused at once ([`PasswordError::Busy`], RESOURCE_EXHAUSTED)
//! rather than queued for seconds; and a job whose caller has gone (a client that gave up, a
//! deadline passed) is dropped when its turn comes instead of run.
//!
//! A sign-in for an email with no account hashes nothing: it waits as long as a verification
//! takes here (a moving average of the real ones), so its answer comes as late as a wrong
//! password's. A flood of made-up emails therefore costs timers, not Argon2 runs, and cannot
//! crowd real customers out of the queue (it did: with 64 such callers, 23 of 40 customers
//! could not sign in within 30 s; `bench abuse`). When the queue is busy, a real account's
//! answer also waits for its turn while a made-up one's does not: under load, timing can tell
//! them apart.

use std::sync::{
    Arc, Mutex, OnceLock,
    atomic::{AtomicU64, Ordering},
    mpsc,
};

use std::cell::RefCell;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};

/// The Argon2id parameters of new hashes (OWASP: m = 7 MiB, t = 5, p = 1).
fn new_params() -> Params {
    Params::new(7 * 1024, 5, 1, Some(Params::DEFAULT_OUTPUT_LEN)).expect("valid parameters")
}

thread_local! {
    /// This password thread's Argon2 memory, grown to the largest run seen.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs Argon2 with this thread's memory block.
fn argon2_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let needed = params.block_count();
        if memory.len() < needed {
            memory.resize(needed, Block::default());
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut memory[..needed])
            .map_err(|error| anyhow::anyhow!("running Argon2: {error}"))
    })
}

fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let params = new_params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|error| anyhow::anyhow!("decoding a fresh salt: {error}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon2, &params, password, salt_bytes, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|error| anyhow::anyhow!("encoding Argon2 parameters: {error}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|error| anyhow::anyhow!("wrapping a hash: {error}"))?),
    };
    Ok(phc.to_string())
}

fn verify_now(password: &[u8], stored: &str) -> anyhow::Result<bool> {
    let malformed = |error: &dyn std::fmt::Display| {
        anyhow::anyhow!("stored password hash is malformed: {error}")
    };
    let parsed = PasswordHash::new(stored).map_err(|e| malformed(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| malformed(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| malformed(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
    let expected = parsed.hash.ok_or_else(|| malformed(&"no hash"))?;
    let salt = parsed.salt.ok_or_else(|| malformed(&"no salt"))?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| malformed(&e))?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    argon2_into(&argon2, &params, password, salt_bytes, &mut out)?;
    // Output's equality is constant-time.
    Ok(Output::new(&out).map_err(|e| malformed(&e))? == expected)
}

type Job = Box<dyn FnOnce() + Send>;

/// Why a password job did not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    /// Every password thread is busy and the queue is full: the caller may retry shortly.
    #[error("too many sign-ins and registrations at once")]
    Busy,
    /// Argon2 failed, or the stored hash is malformed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Jobs per password thread that may wait: at about 20 ms a run, a wait of a third of a second.
const QUEUE_PER_THREAD: usize = 16;

/// The password threads of one server and the bounded queue in front of them. The threads end
/// when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Passwords {
    jobs: mpsc::SyncSender<Job>,
    counts: Arc<Counts>,
    /// How long a verification of a stored hash takes here, in microseconds: a moving average
    /// of the runs (0 until the first).
    verify_micros: Arc<AtomicU64>,
}

/// What the password threads did (shown at `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Argon2 runs.
    pub(crate) ran: Counter,
    /// Jobs dropped unrun because their caller had gone.
    pub(crate) abandoned: Counter,
    /// Jobs queued or running.
    pub(crate) queued: Gauge,
}

impl Passwords {
    /// One thread per core, at most four.
    pub(crate) fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
        Self::with_threads(threads, threads * QUEUE_PER_THREAD)
    }

    /// `threads` password threads with room for `queue` waiting jobs.
    pub(crate) fn with_threads(threads: usize, queue: usize) -> Self {
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("passwords-{index}"))
                .spawn(move || {
                    loop {
                        let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawning a password thread");
        }
        Self { jobs, counts: Arc::default(), verify_micros: Arc::default() }
    }

    /// Shows what the threads do at `/metrics`.
    pub(crate) fn register_metrics(&self, metrics: &videostore_kit::metrics::Metrics) {
        let counts = &self.counts;
        metrics.register("videostore_password_runs", "Argon2 runs", counts.ran.clone());
        let abandoned = "Password jobs dropped unrun because their caller had gone";
        metrics.register("videostore_password_abandoned", abandoned, counts.abandoned.clone());
        let queued = "Password jobs waiting or running";
        metrics.register("videostore_password_queue", queued, counts.queued.clone());
    }

    /// What the threads did so far.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Runs `job` on a password thread, unless its caller is gone by its turn.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let counts = Arc::clone(&self.counts);
        let job: Job = Box::new(move || {
            if done.is_closed() {
                counts.abandoned.inc();
            } else {
                counts.ran.inc();
                let _ = done.send(job());
            }
            counts.queued.dec();
        });
        // Counted before it is sent: a thread may take it (and count it off) at once.
        self.counts.queued.inc();
        self.jobs
            .try_send(job)
            .inspect_err(|_| {
                self.counts.queued.dec();
            })
            .map_err(|error| match error {
                mpsc::TrySendError::Full(_) => PasswordError::Busy,
                mpsc::TrySendError::Disconnected(_) => {
                    anyhow::anyhow!("the password threads are gone").into()
                }
            })?;
        result.await.map_err(|_| anyhow::anyhow!("a password job panicked").into())
    }

    /// Hashes a password (as NFKC, [`crate::domain::normalize_password`]) into a PHC string
    /// (algorithm, parameters, salt and hash).
    pub(crate) async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let password = crate::domain::normalize_password(&password);
        Ok(self.run(move || hash_now(password.as_bytes())).await??)
    }

    /// Checks a password against a stored PHC string, as NFKC; for accounts hashed before
    /// passwords were normalized, also as typed when that differs. With no stored hash (unknown
    /// email) it takes as long as the same verifications would, so response times do not
    /// reveal which emails have accounts (the first one runs them, to learn how long that is).
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let normalized = crate::domain::normalize_password(&password);
        if self.verify_exactly(normalized.clone(), stored.clone()).await? {
            return Ok(true);
        }
        if normalized == password {
            return Ok(false);
        }
        self.verify_exactly(password, stored).await
    }

    async fn verify_exactly(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let typical = self.verify_micros.load(Ordering::Relaxed);
        if stored.is_none() && typical > 0 {
            // No account: as long as a verification, without one (see the module's notes).
            tokio::time::sleep(std::time::Duration::from_micros(typical)).await;
            return Ok(false);
        }
        let average = Arc::clone(&self.verify_micros);
        let verified = self
            .run(move || {
                let known = stored.is_some();
                let stored = match stored {
                    Some(stored) => stored,
                    None => dummy_hash()?.to_owned(),
                };
                let started = std::time::Instant::now();
                let matches = verify_now(password.as_bytes(), &stored)?;
                let took = started.elapsed().as_micros().try_into().unwrap_or(u64::MAX).max(1);
                // An eighth of the newest run: steady, yet following the machine's load.
                let _ = average.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                    Some(if mean == 0 { took } else { mean - mean / 8 + took / 8 })
                });
                Ok::<_, anyhow::Error>(known && matches)
            })
            .await??;
        Ok(verified)
    }

    /// Runs `job` on a password thread (tests: to hold the threads busy).
    #[cfg(test)]
    async fn run_job(&self, job: impl FnOnce() + Send + 'static) -> Result<(), PasswordError> {
        self.run(job).await
    }
}

/// A hash to verify against when the email is unknown, made once: one Argon2 run per sign-in
/// either way.
fn dummy_hash() -> anyhow::Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_now(b"no such account")?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn right_password_verifies_and_wrong_one_does_not() {
        let passwords = Passwords::new();
        let stored = passwords.hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(passwords.verify("correct horse".into(), Some(stored.clone())).await.unwrap());
        assert!(!passwords.verify("wrong horse".into(), Some(stored)).await.unwrap());
        assert!(!passwords.verify("no such account".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_the_crates_defaults_still_verify() {
        use argon2::PasswordHasher;
        let passwords = Passwords::new();
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::default().hash_password(b"old password", &salt).unwrap().to_string();
        assert!(stored.contains("m=19456"));
        assert!(passwords.verify("old password".into(), Some(stored.clone())).await.unwrap());
        assert!(!passwords.verify("new password".into(), Some(stored)).await.unwrap());
        let fresh = passwords.hash("x password".into()).await.unwrap();
        assert!(fresh.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{fresh}");
        assert!(passwords.verify("x password".into(), Some("not a hash".into())).await.is_err());
    }

    #[tokio::test]
    async fn an_unknown_email_runs_no_argon2_and_answers_as_late_as_a_verification() {
        let passwords = Passwords::with_threads(1, 4);
        let stored = passwords.hash("correct horse".into()).await.unwrap();
        assert!(!passwords.verify("wrong horse".into(), Some(stored)).await.unwrap());
        let ran = passwords.counts().ran.get();
        let typical = Duration::from_micros(passwords.verify_micros.load(Ordering::Relaxed));
        assert!(typical > Duration::ZERO, "the verification was timed");
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        assert!(!passwords.verify("no such account".into(), None).await.unwrap());
        let waited = started.elapsed();
        assert_eq!(passwords.counts().ran.get(), ran, "no Argon2 run");
        // The timer's resolution is a millisecond.
        assert!(waited >= typical && waited <= typical + Duration::from_millis(2), "{waited:?}");
    }

    /// A job that holds the one thread until `release` is sent.
    fn hold(passwords: &Passwords) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let passwords = passwords.clone();
        let task = tokio::spawn(async move {
            passwords
                .run_job(move || {
                    let _ = held.recv();
                })
                .await
                .unwrap();
        });
        (release, task)
    }

    async fn until(check: impl Fn() -> bool) {
        while !check() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let passwords = Passwords::with_threads(1, 1);
        let (release, held) = hold(&passwords);
        until(|| passwords.counts().ran.get() == 1).await;
        // One may wait (queued at its first poll); the next is refused without waiting.
        let mut waiting = Box::pin(passwords.verify("waits".into(), None));
        assert!(futures::poll!(&mut waiting).is_pending());
        let refused = passwords.verify("refused".into(), None).await;
        assert!(matches!(refused, Err(PasswordError::Busy)), "{refused:?}");
        release.send(()).unwrap();
        held.await.unwrap();
        assert!(!waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_job_whose_caller_gave_up_is_not_run() {
        let passwords = Passwords::with_threads(1, 8);
        let (release, held) = hold(&passwords);
        until(|| passwords.counts().ran.get() == 1).await;
        // Three callers give up while queued (a deadline, a cancelled call).
        for _ in 0..3 {
            let gave_up =
                tokio::time::timeout(Duration::from_millis(5), passwords.verify("x".into(), None))
                    .await;
            assert!(gave_up.is_err());
        }
        release.send(()).unwrap();
        held.await.unwrap();
        // The next caller is answered, and the abandoned three never ran Argon2.
        assert!(!passwords.verify("answered".into(), None).await.unwrap());
        assert_eq!(passwords.counts().abandoned.get(), 3);
        assert_eq!(passwords.counts().ran.get(), 2);
    }
}
