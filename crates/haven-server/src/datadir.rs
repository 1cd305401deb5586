//! The server's data directory and the modes of what it writes there.
//!
//! Everything in the data directory is secret or private: the SQLite database (sessions, queued
//! ciphertext, metadata), the blobs (encrypted attachments) and the franking key file
//! ([`crate::frank_keys`]), which lets anyone who reads it mint server tags, i.e. forge reports
//! (security review 2026-12, finding 9). So the directory is the operating system's access
//! check: it is created `0700`, every file the server writes is created `0600`, and a directory
//! or file found looser at start (an older deployment, a restore from a backup) is tightened,
//! with a log line saying what was changed. Nothing here depends on the process umask.
//!
//! Trust assumption: the operating-system account the server runs as is the only one that may
//! read the data directory; root and that account are trusted. On non-Unix systems modes are
//! not set (and not checked).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of the data directory and of every directory under it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the server writes.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode `0700`, or tightens an existing one to
/// `0700` if group or others had any access, logging the change.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            // `mode` is filtered by the umask; a umask stricter than 077 is kept only if the
            // owner can still use the directory, so set it explicitly.
            return set_mode(dir, DIR_MODE);
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    tighten(dir, DIR_MODE)
}

/// Tightens `path` (if it exists) to `mode` when group or others have any access; logs it.
/// A missing path is not an error.
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let old = meta.permissions().mode() & 0o777;
        if old & 0o077 != 0 {
            set_mode(path, mode)?;
            tracing::warn!(
                path = %path.display(),
                old = format!("{old:o}"),
                new = format!("{mode:o}"),
                "tightened permissions in the data directory"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Opens options that create a new file with mode `0600` (write, create-new).
pub fn new_private_file(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o.open(path)
}

/// Makes sure the SQLite database file exists with mode `0600` before SQLite opens it, and
/// tightens it and its `-wal`/`-shm`/`-journal` files if they are looser. SQLite creates the
/// `-wal` and `-shm` files with the mode of the database file, so they come out `0600` too.
pub fn prepare_sqlite_file(db: &Path) -> io::Result<()> {
    match new_private_file(db) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    tighten(db, FILE_MODE)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        tighten(Path::new(&p), FILE_MODE)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode `0600`: a temporary file beside it, synced,
/// then renamed over `path`, and the directory synced, so a crash leaves the old file or the
/// new one, never half of one.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rnd = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rnd);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(rnd)));
    let result = (|| {
        let mut f = new_private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            // Makes the rename durable where the platform allows syncing a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_and_tightens() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        let f = d.join("x");
        write_private_atomic(&f, b"one").unwrap();
        assert_eq!(mode(&f), 0o600);
        write_private_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten(&f, FILE_MODE).unwrap();
        assert_eq!(mode(&f), 0o600);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }
}
