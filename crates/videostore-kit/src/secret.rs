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
        Ok(text) => return Ok(text.trim().as_bytes().to_vec()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(hex.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(hex.into_bytes())
        }
        // Another service created it between our read and our create: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}
