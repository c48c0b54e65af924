//! Files only their owner may read: the data folder (0700), the databases and the token secret
//! (0600). Created so from the start; ones found readable by others (an older version, a copy
//! made by hand) are tightened, and that is logged. A data folder others may enter but not list
//! or read (0711) is left so: `cargo xtask up --postgres` run as root keeps PostgreSQL's own
//! folder inside it, which the `postgres` user must reach.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anyhow::Context;

/// Creates `dir` (and its missing parents) as 0700, or takes reading and writing from others
/// (at most 0711).
pub fn dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    tighten(dir, 0o711)
}

/// Creates `file` empty as 0600 if it does not exist (so that whatever writes it next, SQLite
/// with its journal files among them, keeps that mode); else tightens it to 0600.
pub fn file(file: &Path) -> anyhow::Result<()> {
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => tighten(file, 0o600),
        Err(error) => Err(error).with_context(|| format!("creating {}", file.display())),
    }
}

/// Takes group and other permissions away from `path` (if it exists), keeping at most `mode`.
pub fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let current = metadata.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(current & mode)).with_context(|| {
        format!("{} is readable by others ({current:o}) and cannot be made private", path.display())
    })?;
    tracing::info!(path = %path.display(), was = format!("{current:o}"), now = format!("{:o}", current & mode), "made private");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folders_and_files_are_created_private_and_open_ones_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("a/data");
        dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        fs::set_permissions(&data, fs::Permissions::from_mode(0o775)).unwrap();
        dir(&data).unwrap();
        assert_eq!(mode(&data), 0o711, "others may no longer list it, only pass through");

        let db = data.join("x.db");
        file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        fs::write(&db, b"kept").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(fs::read(&db).unwrap(), b"kept", "tightening keeps the contents");
    }
}
