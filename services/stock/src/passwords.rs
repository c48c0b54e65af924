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

use std::sync::{Arc, Mutex, OnceLock, mpsc};

use std::cell::RefCell;

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

/// Runs `job` on one of the password threads and waits for its result.
async fn on_password_thread<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
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
        Mutex::new(sender)
    });
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(job());
    });
    jobs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| anyhow::anyhow!("the password threads are gone"))?;
    result.await.map_err(|_| anyhow::anyhow!("a password job panicked"))
}

/// Hashes a password into a PHC string (algorithm, parameters, salt and hash).
pub(crate) async fn hash(password: String) -> anyhow::Result<String> {
    on_password_thread(move || hash_now(password.as_bytes())).await?
}

/// Checks a password against a stored PHC string. With no stored hash (unknown email) it still
/// runs one verification, so response times do not reveal which emails have accounts.
pub(crate) async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    on_password_thread(move || {
        let known = stored.is_some();
        let stored = match stored {
            Some(stored) => stored,
            None => dummy_hash()?.to_owned(),
        };
        let matches = verify_now(password.as_bytes(), &stored)?;
        Ok(known && matches)
    })
    .await?
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
    use super::*;

    #[tokio::test]
    async fn right_password_verifies_and_wrong_one_does_not() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("wrong horse".into(), Some(stored)).await.unwrap());
        assert!(!verify("no such account".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_the_crates_defaults_still_verify() {
        use argon2::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::default().hash_password(b"old password", &salt).unwrap().to_string();
        assert!(stored.contains("m=19456"));
        assert!(verify("old password".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("new password".into(), Some(stored)).await.unwrap());
        let fresh = hash("x password".into()).await.unwrap();
        assert!(fresh.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{fresh}");
        assert!(verify("x password".into(), Some("not a hash".into())).await.is_err());
    }
}
