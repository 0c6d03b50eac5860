//! File-system steps whose result survives a power loss, not only a process crash.
//!
//! An `fsync` of a file makes its data durable, not its name: a file or directory that was
//! created, renamed or linked is durable only once its parent directory has been synced too
//! (POSIX; ext4 usually commits it sooner, other file systems and power cuts may not). The
//! power-loss nemeses of jepsen/ model exactly that (`jepsen/rkj/lazyfs.py`).

use std::fs::File;
use std::io;
use std::path::Path;

/// Syncs the directory `dir` itself, making the names it holds durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Syncs the directory that holds `path`, making `path`'s name durable (the root has no parent:
/// it is synced itself).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        Some(_) => sync_dir(Path::new(".")),
        None => sync_dir(path),
    }
}

/// `create_dir_all`, then the parent of every directory it created is synced, so the whole
/// chain survives a power loss. The parent of `dir` itself is synced even if `dir` existed: an
/// earlier attempt may have created it and crashed before its sync.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    create(dir, 0o777)
}

/// [`create_dir_all`], creating the missing directories with mode 0700 (for a data directory).
pub fn create_dir_all_private(dir: &Path) -> io::Result<()> {
    create(dir, 0o700)
}

/// Publishes a new file atomically: `contents` go to a private temporary file beside `path`,
/// synced, then linked to `path` (a link fails if the name exists, so a concurrent creator's file
/// wins) and the directory synced. `Ok(false)`: `path` already existed and was left as it was. A
/// crash leaves either no file or the whole file, never a partial one.
pub fn publish_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all(dir)?;
    }
    // A random name opened with O_EXCL: never another writer's file, never through a symlink.
    let mut tmp_name = path.as_os_str().to_os_string();
    tmp_name.push(format!(".tmp.{:016x}", rand::random::<u64>()));
    let tmp = std::path::PathBuf::from(tmp_name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_parent(path).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents with `mode` (before the umask) and syncs their names.
fn create(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(p) = at {
        if p.as_os_str().is_empty() || p.is_dir() {
            break;
        }
        missing.push(p.to_path_buf());
        at = p.parent();
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    // Outermost first: a directory's name is synced before anything inside it.
    for p in missing.iter().rev() {
        sync_parent(p)?;
    }
    if missing.is_empty() {
        sync_parent(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_whole_chain_and_accepts_an_existing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        sync_parent(&deep.join("f")).unwrap();
        let file = tmp.path().join("a/file");
        std::fs::write(&file, b"x").unwrap();
        assert!(create_dir_all(&file).is_err(), "a file is not a directory");
    }
}
