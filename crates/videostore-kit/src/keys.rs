//! Where the token keys come from.
//!
//! Operators configure them: stock's private key (`VIDEOSTORE_TOKEN_SIGNING_KEY`, PKCS#8 PEM),
//! given to stock alone, and the public keys every service trusts
//! (`VIDEOSTORE_TOKEN_VERIFY_KEYS`, one or more SPKI PEM blocks). When they are not set, a key
//! pair is made once in the data folder (`token-signing-key.pem`, 0600, and
//! `token-verify-keys.pem`) by whichever service starts first, and the others read it, so a
//! laptop install works without configuration. The catalogue then reads only the public file.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::auth::{KeyPairPem, TokenKeys, TokenSigner};

const SIGNING_FILE: &str = "token-signing-key.pem";
const VERIFY_FILE: &str = "token-verify-keys.pem";

/// Stock's signer: the configured private key, or the one in the data folder (made once).
pub fn signer(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<TokenSigner> {
    match configured {
        Some(pem) => TokenSigner::from_pem(pem).context("VIDEOSTORE_TOKEN_SIGNING_KEY"),
        None => {
            let pem = load_or_create_pair(data_dir)?;
            TokenSigner::from_pem(&pem.private)
                .with_context(|| format!("{}", data_dir.join(SIGNING_FILE).display()))
        }
    }
}

/// The keys tokens are verified with: the configured public keys, or the data folder's (the
/// pair made once if there is none), plus `signer`'s own.
pub fn verifier(
    configured: Option<&str>,
    data_dir: &Path,
    signer: Option<&TokenSigner>,
) -> anyhow::Result<TokenKeys> {
    match configured {
        Some(pem) => TokenKeys::new(pem, signer).context("VIDEOSTORE_TOKEN_VERIFY_KEYS"),
        None => {
            let path = data_dir.join(VERIFY_FILE);
            let pem = match fs::read_to_string(&path) {
                Ok(pem) => pem,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    load_or_create_pair(data_dir)?.public
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("reading {}", path.display()));
                }
            };
            TokenKeys::new(&pem, signer).with_context(|| format!("{}", path.display()))
        }
    }
}

/// The data folder's key pair, made if there is none. The private key appears whole or not at
/// all, and if another service made one first, its key wins; the public file is then written
/// from whichever private key won.
fn load_or_create_pair(data_dir: &Path) -> anyhow::Result<KeyPairPem> {
    let private_path: PathBuf = data_dir.join(SIGNING_FILE);
    let private = match fs::read_to_string(&private_path) {
        Ok(text) => {
            crate::private::tighten(&private_path, 0o600)?;
            text
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            crate::private::dir(data_dir)?;
            let made = KeyPairPem::generate()?;
            match publish(data_dir, SIGNING_FILE, &made.private, false)? {
                true => made.private,
                // Another service got there first.
                false => fs::read_to_string(&private_path)
                    .with_context(|| format!("reading {}", private_path.display()))?,
            }
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", private_path.display()));
        }
    };
    let signer =
        TokenSigner::from_pem(&private).with_context(|| format!("{}", private_path.display()))?;
    let public = signer.public_pem()?;
    let public_path = data_dir.join(VERIFY_FILE);
    if fs::read_to_string(&public_path).ok().as_deref() != Some(public.as_str()) {
        publish(data_dir, VERIFY_FILE, &public, true)?;
    }
    Ok(KeyPairPem { private, public })
}

/// Writes `text` to `name` in `dir` through a private temporary file: linked into place unless
/// the file exists (`false` then), or renamed over it when `replace`.
fn publish(dir: &Path, name: &str, text: &str, replace: bool) -> anyhow::Result<bool> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}", std::process::id()));
    // A leftover of a crashed start with this pid goes; the file is then made afresh.
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", temporary.display()))?;
    file.sync_all()?;
    drop(file);
    if replace {
        let renamed = fs::rename(&temporary, &path);
        let _ = fs::remove_file(&temporary);
        renamed.with_context(|| format!("writing {}", path.display()))?;
        return Ok(true);
    }
    let linked = fs::hard_link(&temporary, &path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{
        auth::{Caller, Role},
        ids::AccountId,
    };

    #[test]
    fn a_made_pair_is_reused_private_and_verifies_what_it_signs() {
        let dir = tempfile::tempdir().unwrap();
        // The catalogue may start first: it makes the pair but keeps only the public key.
        let catalogue = verifier(None, dir.path(), None).unwrap();
        let stock = signer(None, dir.path()).unwrap();
        assert_eq!(signer(None, dir.path()).unwrap().kid(), stock.kid());
        let caller =
            Caller { account_id: AccountId::new(1), email: "a@b.c".into(), role: Role::Staff };
        let token = stock.issue(&caller, SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(catalogue.verify(&token.token).unwrap(), caller);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |name| fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode(SIGNING_FILE) & 0o777, 0o600);
        }
        let public = fs::read_to_string(dir.path().join(VERIFY_FILE)).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        assert!(!public.contains("PRIVATE"));
        let files = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 2, "no temporary file is left behind");
    }

    #[test]
    fn configured_keys_win_over_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let pair = KeyPairPem::generate().unwrap();
        let stock = signer(Some(&pair.private), dir.path()).unwrap();
        let keys = verifier(Some(&pair.public), dir.path(), None).unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), vec![stock.kid()]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is written");
        assert!(signer(Some("not a key"), dir.path()).is_err());
    }
}
