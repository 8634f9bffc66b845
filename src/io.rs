//! Writing files: every file ttrec writes (checkpoints, caches, synthetic data, summaries, plots)
//! goes through [`write_atomic_with`], so a crash or an error leaves either the old file or the
//! complete new one, never half of one, and every error names the path.
//!
//! The temporary file of a write is `.NAME.PID.RANDOM.tmp` beside the target: a writer that
//! dies (kill -9, power loss) leaves it behind, and the next write of the same target removes
//! every such file whose process is gone (judged from `/proc`; where there is none, only this
//! process's own). On SIGINT or SIGTERM the program removes the temporary files it is writing
//! before it exits ([`remove_temp_files`], called by the `signals` module).
//!
//! Also here: [`OutputLock`], the advisory lock a run takes on each output path so that two
//! runs never write one file in turns, and [`safetensors_bytes`], the one byte-reproducible
//! safetensors serialisation.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Temporary files (and lock files) this process is writing: removed by [`remove_temp_files`].
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers `path` in [`LIVE`] for as long as it lives.
#[derive(Debug)]
struct Live(PathBuf);

impl Live {
    fn new(path: PathBuf) -> Self {
        if let Ok(mut v) = LIVE.lock() {
            v.push(path.clone());
        }
        Live(path)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(mut v) = LIVE.lock() {
            if let Some(i) = v.iter().position(|p| *p == self.0) {
                v.swap_remove(i);
            }
        }
    }
}

/// Removes every temporary file this process is writing (and its output locks): for a program
/// that is about to exit on a signal. Errors are ignored (the file may be gone already).
pub fn remove_temp_files() {
    // try_lock: a signal can arrive while this thread's own code holds the list.
    let paths: Vec<PathBuf> = match LIVE.try_lock() {
        Ok(v) => v.clone(),
        Err(_) => return,
    };
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

/// Whether process `pid` is running: from `/proc` where there is one; elsewhere only this
/// process is known to be (any other might be).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// The pid in a temporary file name of target `name` (`.NAME.PID.RANDOM.tmp`), if it is one.
fn temp_file_pid(file: &str, name: &str) -> Option<u32> {
    let rest = file
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?;
    let rest = rest.strip_suffix(".tmp")?;
    let (pid, random) = rest.split_once('.')?;
    if random.is_empty() || random.contains('.') || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporary files of target `name` in `dir` left by writers that are gone.
fn remove_stale_temp_files(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.to_str().and_then(|f| temp_file_pid(f, name)) else {
            continue;
        };
        if !process_alive(pid) {
            let path = dir.join(&file);
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!(
                    "removed {} (left by process {pid}, which is gone)",
                    path.display()
                ),
                Err(e) => log::debug!("cannot remove stale {}: {e}", path.display()),
            }
        }
    }
}

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
    let name = name.to_string_lossy();
    remove_stale_temp_files(dir, &name);
    let prefix = format!(".{name}.{}.", std::process::id());
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
    let live = Live::new(tmp.path().to_path_buf());
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
    drop(live);
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

/// An advisory lock on an output path, held while a run writes it: the file `.NAME.lock`
/// beside the target, locked exclusively (`flock`, `LockFileEx`) and holding the pid of the
/// process that holds it. Released (and the file removed) when dropped; a process that dies
/// releases it too (the kernel drops the lock; a later run reuses the file). Advisory: only
/// programs that take the lock respect it.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: Option<File>,
    _live: Live,
}

impl OutputLock {
    /// Locks `target` for writing, or fails at once naming `what` (the option) and the
    /// process that holds it.
    pub fn acquire(target: &Path, what: &str) -> Result<Self> {
        use fs4::fs_std::FileExt;
        let name = target
            .file_name()
            .ok_or_else(|| Error::file(target, format!("{what}: not a file path")))?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let path = dir.join(format!(".{}.lock", name.to_string_lossy()));
        let io = |doing: &str, e: std::io::Error| {
            Error::file(&path, format!("{what}: cannot {doing} the lock file: {e}"))
        };
        // A holder removes the file on release: a lock taken on a file that is no longer at
        // `path` is worth nothing, so the path is opened again until the two agree.
        for _ in 0..100 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io("open", e))?;
            if !file.try_lock_exclusive().map_err(|e| io("lock", e))? {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::file(
                    target,
                    format!(
                        "{what}: another ttrec run is writing this file ({}; lock {}); wait for it to end or choose another path",
                        if holder.is_empty() { "pid unknown" } else { holder },
                        path.display()
                    ),
                ));
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(|e| io("write", e))?;
            write!(file, "pid {}", std::process::id()).map_err(|e| io("write", e))?;
            file.flush().map_err(|e| io("write", e))?;
            return Ok(OutputLock {
                _live: Live::new(path.clone()),
                path,
                file: Some(file),
            });
        }
        Err(Error::file(
            &path,
            format!("{what}: the lock file keeps changing"),
        ))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no one locks a file about to vanish unnoticed.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// Whether the open `file` is the file now at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        // An open file cannot be removed there: the path still names it.
        let _ = (file, path);
        true
    }
}

/// A safetensors file of f32 tensors, byte for byte the same for the same tensors and
/// metadata: the metadata sorted by key, the tensors by name (and their data in that order),
/// the header padded with spaces to 8 bytes, as the format specifies. (The `safetensors`
/// crate writes the metadata in its map's iteration order, which differs between runs.)
pub fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    safetensors_bytes_with_u32(tensors, &[], metadata)
}

/// [`safetensors_bytes`] with U32 tensors beside the F32 ones (a checkpoint's dictionaries),
/// all sorted by name together.
pub fn safetensors_bytes_with_u32(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    u32_tensors: &[(String, Vec<usize>, Vec<u32>)],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    safetensors_bytes_with_f16(tensors, &|_| false, u32_tensors, metadata)
}

/// [`safetensors_bytes_with_u32`] where the f32 tensors named by `f16` are written as F16
/// (rounded to nearest, ties to even: TT cores stored as f16, whose values are f16 already).
pub fn safetensors_bytes_with_f16(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    f16: &dyn Fn(&str) -> bool,
    u32_tensors: &[(String, Vec<usize>, Vec<u32>)],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    use std::borrow::Cow;
    let json = |s: &str| serde_json::to_string(s).expect("a string serialises");
    /// A tensor to write: name, shape, dtype, number of values, bytes.
    type Entry<'a> = (
        &'a String,
        &'a Vec<usize>,
        &'static str,
        usize,
        Cow<'a, [u8]>,
    );
    let mut order: Vec<Entry> = tensors
        .iter()
        .map(|(n, s, d)| {
            if f16(n) {
                let bytes: Vec<u8> = d
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
                    .collect();
                (n, s, "F16", d.len(), Cow::Owned(bytes))
            } else {
                let bytes = bytemuck::cast_slice::<f32, u8>(d);
                (n, s, "F32", d.len(), Cow::Borrowed(bytes))
            }
        })
        .chain(u32_tensors.iter().map(|(n, s, d)| {
            let bytes = bytemuck::cast_slice::<u32, u8>(d);
            (n, s, "U32", d.len(), Cow::Borrowed(bytes))
        }))
        .collect();
    order.sort_by(|a, b| a.0.cmp(b.0));
    let mut header = String::from("{");
    if !metadata.is_empty() {
        let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
        let entries: Vec<String> = sorted
            .iter()
            .map(|(k, v)| format!("{}:{}", json(k), json(v)))
            .collect();
        header += &format!("\"__metadata__\":{{{}}}", entries.join(","));
    }
    let mut offset = 0usize;
    for (i, (name, shape, dtype, len, bytes)) in order.iter().enumerate() {
        if i > 0 && order[i - 1].0 == *name {
            return Err(Error::input(None, format!("two tensors are named {name}")));
        }
        if shape.iter().product::<usize>() != *len {
            return Err(Error::input(
                None,
                format!("tensor {name}: shape {shape:?} but {len} values"),
            ));
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let end = offset + bytes.len();
        if header.len() > 1 {
            header.push(',');
        }
        header += &format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            json(name),
            dims.join(",")
        );
        offset = end;
    }
    header.push('}');
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, _, _, _, bytes) in order {
        out.extend_from_slice(&bytes);
    }
    Ok(out)
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
    fn temp_file_names_carry_the_target_and_the_pid() {
        assert_eq!(temp_file_pid(".ck.st.123.aB3x9Q.tmp", "ck.st"), Some(123));
        assert_eq!(temp_file_pid(".ck.st.123.aB3x9Q.tmp", "ck"), None);
        assert_eq!(temp_file_pid(".ck.st.aB3x9Q.tmp", "ck.st"), None); // no pid (older ttrec)
        assert_eq!(temp_file_pid(".ck.st.12x.aB3.tmp", "ck.st"), None);
        assert_eq!(temp_file_pid(".ck.st.123..tmp", "ck.st"), None);
        assert_eq!(temp_file_pid("ck.st.123.aB3.tmp", "ck.st"), None);
    }

    #[test]
    fn a_write_removes_stale_temp_files_of_its_target_only() {
        let dir = temp_dir("stale");
        let path = dir.join("out.bin");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let mine = std::process::id();
        let names = [
            format!(".out.bin.{gone}.abc123.tmp"), // a dead writer's: removed
            format!(".out.bin.{mine}.abc123.tmp"), // this live process's: kept
            format!(".other.bin.{gone}.abc123.tmp"), // another target's: kept
            ".out.bin.abc123.tmp".to_string(),     // no pid: kept
        ];
        for n in &names {
            std::fs::write(dir.join(n), b"half").unwrap();
        }
        write_atomic(&path, b"whole").unwrap();
        let left = entries(&dir);
        assert!(!left.contains(&names[0]), "{left:?}");
        for n in &names[1..] {
            assert!(left.contains(n), "{n} removed: {left:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn live_temp_files_are_known_until_the_write_ends() {
        let dir = temp_dir("live");
        let path = dir.join("f.txt");
        let seen = write_atomic_with(&path, |w| {
            w.write_all(b"x")?;
            Ok(LIVE.lock().unwrap().clone())
        })
        .unwrap();
        let mine: Vec<&PathBuf> = seen.iter().filter(|p| p.starts_with(&dir)).collect();
        assert_eq!(mine.len(), 1, "{seen:?}");
        assert!(!mine[0].exists(), "the temp file outlived the write");
        assert!(!LIVE.lock().unwrap().iter().any(|p| p.starts_with(&dir)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_output_lock_is_exclusive_and_names_its_holder() {
        let dir = temp_dir("lock");
        let target = dir.join("ck.st");
        let held = OutputLock::acquire(&target, "--save-model").unwrap();
        let err = OutputLock::acquire(&target, "--save-model")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("--save-model"),
            "{err}"
        );
        drop(held);
        assert_eq!(entries(&dir), Vec::<String>::new());
        let again = OutputLock::acquire(&target, "--save-model").unwrap();
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn safetensors_bytes_are_canonical_and_readable() {
        let tensors = vec![
            ("b".to_string(), vec![3], vec![1f32, 2.0, 3.0]),
            ("a".to_string(), vec![1, 2], vec![4f32, 5.0]),
        ];
        let meta: HashMap<String, String> = (0..20)
            .map(|i| (format!("k{i}"), format!("\"v\" {i}")))
            .collect();
        let bytes = safetensors_bytes(&tensors, &meta).unwrap();
        let mut reversed = tensors.clone();
        reversed.reverse();
        let meta2: HashMap<String, String> = meta.clone().into_iter().collect();
        assert_eq!(safetensors_bytes(&reversed, &meta2).unwrap(), bytes);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let a = st.tensor("a").unwrap();
        assert_eq!(a.shape(), [1, 2]);
        assert_eq!(a.data(), bytemuck::cast_slice::<f32, u8>(&[4.0, 5.0]));
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap(), &meta);
        let bad = vec![("x".to_string(), vec![2], vec![1f32])];
        assert!(safetensors_bytes(&bad, &meta).is_err());
        let twice = vec![tensors[0].clone(), tensors[0].clone()];
        assert!(safetensors_bytes(&twice, &meta).is_err());
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
