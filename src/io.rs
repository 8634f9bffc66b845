//! Writing files: every file ttrec writes (checkpoints, caches, synthetic data, summaries, plots)
//! goes through [`write_atomic_with`], so a crash or an error leaves either the old file or the
//! complete new one, never half of one, and every error names the path.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// The buffered writer a [`write_atomic_with`] closure writes to; it can also seek (the cache
/// writes its header last).
pub type AtomicWriter<'a> = BufWriter<&'a mut File>;

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// Writes `path` atomically: `write` fills a temporary file created in the same directory, which
/// is then flushed, synced to disk and renamed over `path`; on Unix the directory is synced too,
/// so the rename survives a crash. If `write` or any step fails, the temporary file is removed
/// and `path` is left as it was.
///
/// I/O errors inside `write` (returned with `?` as [`Error::Io`]) come back as
/// [`Error::File`] naming `path`; other errors (say, of a source being read) pass through
/// unchanged. The new file gets the permissions a plain `File::create` would give it.
pub fn write_atomic_with<T>(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut AtomicWriter) -> Result<T>,
) -> Result<T> {
    let path = path.as_ref();
    let io = |what: &str, e: std::io::Error| Error::file(path, format!("cannot {what}: {e}"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "not a file path (no file name)"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    let perms = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o666)
    };
    #[cfg(unix)]
    builder.permissions(perms);
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| io(&format!("create a temporary file in {}", dir.display()), e))?;
    let value = {
        let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        let value = write(&mut writer).map_err(|e| match e {
            Error::Io(e) => io("write", e),
            e => e,
        })?;
        writer.flush().map_err(|e| io("write", e))?;
        value
    };
    tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
    tmp.persist(path)
        .map_err(|e| io("rename the temporary file into place", e.error))?;
    sync_dir(dir);
    Ok(value)
}

/// Makes a rename in `dir` durable (Unix). Best effort: some file systems cannot sync a
/// directory, and the file itself is complete either way.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!("cannot sync directory {}: {e}", dir.display());
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ttrec-io-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_replaces_and_leaves_no_temporary_file() {
        let dir = temp_dir("replace");
        let path = dir.join("out.bin");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let n = write_atomic_with(&path, |w| {
            w.write_all(b"XXXXsecond")?;
            w.seek(SeekFrom::Start(0))?;
            w.write_all(b"new ")?;
            Ok(7)
        })
        .unwrap();
        assert_eq!(n, 7);
        assert_eq!(std::fs::read(&path).unwrap(), b"new second");
        assert_eq!(entries(&dir), ["out.bin"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_ne!(mode & 0o044, 0, "not readable by others: {mode:o}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = temp_dir("fail");
        let path = dir.join("keep.txt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| -> Result<()> {
            w.write_all(b"half of a new file")?;
            Err(Error::input(None, "the source broke"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the source broke"), "{err}");
        let err = write_atomic_with(&path, |_| -> Result<()> {
            Err(std::io::Error::other("disk on fire").into())
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("keep.txt") && msg.contains("disk on fire"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(&dir), ["keep.txt"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_path() {
        let dir = temp_dir("missing");
        let path = dir.join("no/such/dir/file.json");
        let msg = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(msg.contains("no/such/dir/file.json"), "{msg}");
        let msg = write_atomic(&dir, b"x").unwrap_err().to_string();
        assert!(msg.contains(&*dir.to_string_lossy()), "{msg}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
