//! The key that signs tokens. All services of one store must share it.
//!
//! Operators set it explicitly (`VIDEOSTORE_TOKEN_SECRET`). When it is not set, the first service
//! to start creates a random one in `<data dir>/token-secret` and the others read it, so a laptop
//! install works without configuration.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rand::RngCore;

/// Returns the configured secret, or reads (creating it if needed) the one in the data folder.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        return Ok(secret.as_bytes().to_vec());
    }
    let path: PathBuf = data_dir.join("token-secret");
    match fs::read_to_string(&path) {
        Ok(text) => {
            crate::private::tighten(&path, 0o600)?;
            return Ok(text.trim().as_bytes().to_vec());
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    crate::private::dir(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Write a private temporary file, then link it into place: the secret appears whole or not
    // at all, and if another service got there first its secret wins and ours is dropped.
    let temporary = data_dir.join(format!(".token-secret.{}", std::process::id()));
    // A leftover of a crashed start with this pid goes; the file is then made afresh.
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(hex.as_bytes()).with_context(|| format!("writing {}", temporary.display()))?;
    file.sync_all()?;
    drop(file);
    let linked = fs::hard_link(&temporary, &path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(hex.into_bytes()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_secret_is_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(None, dir.path()).unwrap(), first);
        assert_eq!(load_or_create(Some("configured"), dir.path()).unwrap(), b"configured");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("token-secret")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
