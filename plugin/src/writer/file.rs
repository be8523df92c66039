//! The local file writer: temporary name, fsync, rename, fsync of the folder. A crash
//! leaves either the complete file or a hidden `.tmp` file that readers ignore, and
//! that the writer's sweep removes once it is older than [`TMP_LEFTOVER_AGE`].

use super::{Swept, WriteError, Writer};
use crate::partition::join_under;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old a temporary file must be before a sweep takes it for a crash's leftover. A
/// write in progress keeps its temporary file for the seconds a write and an fsync take;
/// another process writing to the same folder (a shared volume) may be in the middle of
/// one, so only files far older than any write are removed.
pub const TMP_LEFTOVER_AGE: Duration = Duration::from_secs(600);

/// The hidden temporary name [`write_atomic`] writes `name` under first:
/// `.<name>.<ULID>.tmp`. The ULID keeps concurrent writes of one name apart and dates
/// the file for [`written_at`].
fn tmp_name(name: &str) -> String {
    format!(".{name}.{}{TMP_SUFFIX}", ulid::Ulid::generate())
}

/// The suffix of the files kept open across flushes (FileMaxAge) while they grow: a
/// name of its own, as the sweep of [`TMP_SUFFIX`] files would take an open file older
/// than [`TMP_LEFTOVER_AGE`] for a leftover.
pub const SPOOL_SUFFIX: &str = ".open";

/// The suffix of the temporary files of atomic writes (`.<name>.<ULID>.tmp`).
pub const TMP_SUFFIX: &str = ".tmp";

/// A new hidden name for an open file's spool in its output folder (or the spool
/// folder): `.d2p.<ULID>.open`, dated by its ULID like the temporary files'.
pub fn spool_name() -> String {
    format!(".d2p.{}{SPOOL_SUFFIX}", ulid::Ulid::generate())
}

/// When the hidden file `name` ending in `suffix` was begun, if it is one
/// [`tmp_name`] or [`spool_name`] made (read from its ULID, so other tools' hidden
/// files are never taken for ours).
fn written_at(name: &str, suffix: &str) -> Option<SystemTime> {
    let stem = name.strip_prefix('.')?.strip_suffix(suffix)?;
    let (_, id) = stem.rsplit_once('.')?;
    ulid::Ulid::from_string(id).ok().map(|u| u.datetime())
}

/// Removes the temporary files of interrupted writes in `dir` (and its folders, with
/// `recurse`) begun more than `age` before `now`. Symbolic links are not followed, so a
/// sweep stays inside `dir`.
pub fn sweep_tmp(dir: &Path, recurse: bool, now: SystemTime, age: Duration, out: &mut Swept) {
    sweep_hidden(dir, TMP_SUFFIX, recurse, now, age, out);
}

/// Removes our hidden files ending in `suffix` (see [`sweep_tmp`]).
pub fn sweep_hidden(
    dir: &Path,
    suffix: &str,
    recurse: bool,
    now: SystemTime,
    age: Duration,
    out: &mut Swept,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() {
            if recurse {
                sweep_hidden(&path, suffix, recurse, now, age, out);
            }
            continue;
        }
        let stale = kind.is_file()
            && written_at(&e.file_name().to_string_lossy(), suffix)
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|waited| waited > age);
        if stale {
            out.remove_file(&path);
        }
    }
}

pub struct FileWriter {
    root: PathBuf,
    fsync: bool,
    /// With FileMaxAge: the age past which an open file's spool is a crash's leftover
    /// (no open file lives longer than FileMaxAge).
    spool_leftover_age: Option<Duration>,
    /// Files written under their temporary names, for [`Writer::commit_staged`] to
    /// make durable and rename.
    staged: Vec<Staged>,
}

/// A file [`Writer::stage`] wrote under its temporary name, its writeback started.
struct Staged {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
}

impl FileWriter {
    pub fn new(root: &Path, fsync: bool) -> Self {
        FileWriter {
            root: root.to_path_buf(),
            fsync,
            spool_leftover_age: None,
            staged: Vec::new(),
        }
    }

    /// Files kept open for up to `max_age` (FileMaxAge) are spooled in their output
    /// folders; the sweep then also removes the spools a crash left.
    pub fn with_open_files(mut self, max_age: Duration) -> Self {
        self.spool_leftover_age = Some(max_age.saturating_add(TMP_LEFTOVER_AGE));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The second half of a group's write (see [`Writer::stage`]): every file synced,
    /// then renamed, then each folder synced once. Stops at the first error.
    fn commit(&self, staged: &[Staged]) -> Result<(), WriteError> {
        for s in staged {
            s.file
                .sync_all()
                .map_err(|e| WriteError::io("fsync", &s.tmp, e))?;
        }
        for s in staged {
            fs::rename(&s.tmp, &s.path).map_err(|e| WriteError::io("rename", &s.path, e))?;
        }
        let folders: std::collections::BTreeSet<&Path> =
            staged.iter().map(|s| folder_of(&s.path)).collect();
        for dir in folders {
            sync_dir(dir).map_err(|e| WriteError::io("fsync folder", dir, e))?;
        }
        Ok(())
    }
}

/// Bytes written to a [`WriteBehind`] file between two starts of writeback.
pub const WRITE_BEHIND_BYTES: u64 = 8 << 20;

/// A file written front to back (json2parquet's single file, an open file's spool)
/// whose written bytes are handed to the kernel's writeback every
/// [`WRITE_BEHIND_BYTES`] (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`, Linux).
///
/// Such a file is hundreds of megabytes, written over seconds and made durable with
/// one `fsync` at the end. Without this the kernel holds the pages until that fsync
/// (far below its dirty limits, it waits up to 30 s), which then writes them all while
/// nothing else runs: 60–120 ms at the end of json2parquet's 1M-record bench, about
/// 3 % of its wall time. Started as the file grows, the writing overlaps the work that
/// produces the rest. The call only starts writeback, so it does not wait for the disk
/// unless the disk is behind, and its errors are left to the fsync, which reports
/// them.
pub struct WriteBehind {
    file: File,
    written: u64,
    /// Where the bytes not yet handed to writeback begin.
    behind: u64,
}

impl WriteBehind {
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            behind: 0,
        }
    }

    /// The file, to sync and close.
    pub fn into_inner(self) -> File {
        self.file
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.behind >= WRITE_BEHIND_BYTES {
            start_writeback(&self.file, self.behind, self.written - self.behind);
            self.behind = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Starts writing `len` bytes of `file` from `offset` to disk, without waiting.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and the call
    // reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the final fsync does all the writing, as before.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

/// Syncs the folder `dir` (the current folder for an empty path): what makes the
/// names of files created or renamed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// The folder `path` is in, for [`sync_dir`].
pub fn folder_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Creates `dir` and its missing parents, like `create_dir_all`. With `fsync`, also
/// syncs the parent of every folder it created: a file's own fsync and its folder's
/// make the file durable, but a partition folder made for it is only an entry in *its*
/// parent, and a crash before that parent reaches the disk loses the new folder with
/// every file already acknowledged in it.
pub fn create_dir_durable(dir: &Path, fsync: bool) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    // The missing folders, deepest first, up to the first one that exists.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        missing.push(d);
        at = d.parent();
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Another writer made it in the meantime (concurrent flushes of two keys
            // under one new folder). Its parent is synced here all the same: the other
            // writer may not have got that far yet.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
        if fsync {
            sync_dir(folder_of(d))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a hidden temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], fsync: bool) -> Result<(), WriteError> {
    let (f, tmp) = write_tmp(path, bytes, fsync)?;
    let dir = folder_of(path);
    let res = (|| {
        if fsync {
            f.sync_all().map_err(|e| WriteError::io("fsync", &tmp, e))?;
        }
        drop(f);
        fs::rename(&tmp, path).map_err(|e| WriteError::io("rename", path, e))?;
        if fsync {
            sync_dir(dir).map_err(|e| WriteError::io("fsync folder", dir, e))?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Writes `bytes` under a hidden temporary name in `path`'s folder (made if missing),
/// and returns the open file and that name; removes it again if the write fails.
fn write_tmp(path: &Path, bytes: &[u8], fsync: bool) -> Result<(File, PathBuf), WriteError> {
    let dir = folder_of(path);
    create_dir_durable(dir, fsync).map_err(|e| WriteError::io("create folder", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(tmp_name(&name));
    let mut f = File::create(&tmp).map_err(|e| WriteError::io("create", &tmp, e))?;
    if let Err(e) = f.write_all(bytes) {
        drop(f);
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::io("write", &tmp, e));
    }
    Ok((f, tmp))
}

impl Writer for FileWriter {
    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let path = join_under(&self.root, name)?;
        write_atomic(&path, bytes, self.fsync)
    }

    /// Only with fsync: without it a file costs no more alone than in a group.
    fn stages(&self) -> bool {
        self.fsync
    }

    /// Writes the file under its temporary name and starts its writeback, so that the
    /// group's fsyncs find every file of the group already on its way to the disk and
    /// share their journal commits.
    fn stage(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        if !self.fsync {
            return self.put(name, bytes);
        }
        let path = join_under(&self.root, name)?;
        let (file, tmp) = write_tmp(&path, bytes, true)?;
        start_writeback(&file, 0, bytes.len() as u64);
        self.staged.push(Staged { file, tmp, path });
        Ok(())
    }

    fn commit_staged(&mut self) -> Result<(), WriteError> {
        let res = self.commit(&self.staged);
        match res {
            Ok(()) => self.staged.clear(),
            // Those already renamed are complete files; they are written again, under
            // the same names, by the caller's retries.
            Err(_) => self.discard_staged(),
        }
        res
    }

    fn discard_staged(&mut self) {
        for s in std::mem::take(&mut self.staged) {
            let _ = fs::remove_file(&s.tmp);
        }
    }

    /// An open file grows in its own output folder, under a hidden name readers skip,
    /// so that finishing it is a rename: no copy, and never half a file under its name.
    fn spool_path(&mut self, folder: &str) -> Result<Option<PathBuf>, WriteError> {
        let dir = match folder {
            "" => self.root.clone(),
            f => join_under(&self.root, f)?,
        };
        create_dir_durable(&dir, self.fsync)
            .map_err(|e| WriteError::io("create folder", &dir, e))?;
        Ok(Some(dir.join(spool_name())))
    }

    fn put_spooled(&mut self, name: &str, spool: &Path) -> Result<(), WriteError> {
        let path = join_under(&self.root, name)?;
        let dir = folder_of(&path);
        if folder_of(spool) != dir {
            // A spool made for another folder: copied, as other writers' spools are.
            let bytes = fs::read(spool).map_err(|e| WriteError::io("read", spool, e))?;
            write_atomic(&path, &bytes, self.fsync)?;
            let _ = fs::remove_file(spool);
            return Ok(());
        }
        if self.fsync {
            File::open(spool)
                .and_then(|f| f.sync_all())
                .map_err(|e| WriteError::io("fsync", spool, e))?;
        }
        fs::rename(spool, &path).map_err(|e| WriteError::io("rename", &path, e))?;
        if self.fsync {
            sync_dir(dir).map_err(|e| WriteError::io("fsync folder", dir, e))?;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), WriteError> {
        fs::create_dir_all(&self.root)
            .map_err(|e| WriteError::io("create folder", &self.root, e))?;
        let probe = self
            .root
            .join(format!(".d2p-probe-{}", ulid::Ulid::generate()));
        fs::write(&probe, b"").map_err(|e| WriteError::io("write", &self.root, e))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    /// Removes the temporary files that writes cut short by a crash left anywhere under
    /// the output folder (readers skip hidden files, but they take disk space).
    fn sweep_leftovers(&mut self) -> Result<Swept, WriteError> {
        let mut swept = Swept::new("temporary files");
        sweep_tmp(
            &self.root,
            true,
            SystemTime::now(),
            TMP_LEFTOVER_AGE,
            &mut swept,
        );
        if let Some(age) = self.spool_leftover_age {
            sweep_hidden(
                &self.root,
                SPOOL_SUFFIX,
                true,
                SystemTime::now(),
                age,
                &mut swept,
            );
        }
        Ok(swept)
    }

    fn describe(&self) -> String {
        format!("file writer at {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write-behind file holds exactly the bytes written, in order, whatever the
    /// sizes of the writes, and hands its bytes to writeback once at least
    /// [`WRITE_BEHIND_BYTES`] have gathered.
    #[test]
    fn a_write_behind_file_holds_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        let mut want = Vec::new();
        // Writes of uneven sizes, some larger than the stretch.
        for (i, size) in [1usize, 4095, 3 << 20, 9 << 20, 17, 5 << 20, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let chunk: Vec<u8> = (0..size).map(|k| (k * 31 + i * 7) as u8).collect();
            w.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        w.flush().unwrap();
        assert_eq!(w.written, want.len() as u64);
        // The 9 MiB write took the file past the first 8 MiB, to 12 MiB and 4 KiB: that
        // much was handed on, and the 6 MiB after it are less than a stretch.
        assert_eq!(w.behind, (12 << 20) + 4096);
        let f = w.into_inner();
        f.sync_all().unwrap();
        drop(f);
        assert!(fs::read(&path).unwrap() == want, "the file's bytes differ");
    }

    /// Staged files stay under their temporary names until the commit, which puts each
    /// under its name in its folder; discarded ones leave nothing behind.
    #[test]
    fn staged_files_appear_at_the_commit_and_discarded_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FileWriter::new(dir.path(), true);
        assert!(w.stages());
        w.stage("a=1/x.parquet", b"one").unwrap();
        w.stage("a=2/y.parquet", b"two").unwrap();
        let names = |d: &str| -> Vec<String> {
            fs::read_dir(dir.path().join(d))
                .map(|r| {
                    r.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        for d in ["a=1", "a=2"] {
            let n = names(d);
            assert!(n.len() == 1 && n[0].ends_with(TMP_SUFFIX), "{n:?}");
        }
        w.commit_staged().unwrap();
        assert_eq!(fs::read(dir.path().join("a=1/x.parquet")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("a=2/y.parquet")).unwrap(), b"two");
        assert_eq!((names("a=1").len(), names("a=2").len()), (1, 1));
        w.stage("a=1/z.parquet", b"three").unwrap();
        w.discard_staged();
        w.commit_staged().unwrap();
        assert_eq!(names("a=1"), ["x.parquet"]);
        // Without fsync a staged file is written at once.
        let mut w = FileWriter::new(dir.path(), false);
        assert!(!w.stages());
        w.stage("a=3/v.parquet", b"four").unwrap();
        assert_eq!(fs::read(dir.path().join("a=3/v.parquet")).unwrap(), b"four");
    }

    #[test]
    fn writes_atomically_under_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FileWriter::new(dir.path(), true);
        w.put("a=1/b/x.parquet", b"PAR1").unwrap();
        assert_eq!(
            fs::read(dir.path().join("a=1/b/x.parquet")).unwrap(),
            b"PAR1"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a=1/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
        assert!(matches!(
            w.put("../escape.parquet", b"x"),
            Err(WriteError::Path(_))
        ));
        assert!(matches!(
            w.put("/abs.parquet", b"x"),
            Err(WriteError::Path(_))
        ));
        w.check().unwrap();
    }

    #[test]
    fn new_folders_are_made_top_down_and_races_between_makers_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("y=2026/m=11/d=27");
        create_dir_durable(&deep, true).unwrap();
        assert!(deep.is_dir());
        // An existing folder and an empty path are fine.
        create_dir_durable(&deep, true).unwrap();
        create_dir_durable(Path::new(""), true).unwrap();
        // A file where a folder should be is an error, not a silent success.
        let blocker = dir.path().join("blocked");
        fs::write(&blocker, b"x").unwrap();
        let err = create_dir_durable(&blocker.join("sub"), true).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(!blocker.join("sub").exists());
        // Flushes of several keys making one new folder tree at once all succeed.
        let shared = dir.path().join("h=17/svc");
        std::thread::scope(|s| {
            for i in 0..8 {
                let leaf = shared.join(format!("k{}", i % 2));
                s.spawn(move || create_dir_durable(&leaf, true).unwrap());
            }
        });
        assert!(shared.join("k0").is_dir() && shared.join("k1").is_dir());
    }

    #[test]
    fn the_sweep_removes_only_old_temporary_files_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a=1/b");
        fs::create_dir_all(&deep).unwrap();
        let old = SystemTime::now() - TMP_LEFTOVER_AGE - Duration::from_secs(60);
        let old_id = ulid::Ulid::from_datetime(old);
        let stale = deep.join(format!(".x.parquet.{old_id}.tmp"));
        let young = deep.join(format!(".y.parquet.{}.tmp", ulid::Ulid::generate()));
        let foreign = deep.join(".z.parquet.notaulid.tmp");
        let done = deep.join("x.parquet");
        for p in [&stale, &young, &foreign, &done] {
            fs::write(p, b"PAR1").unwrap();
        }
        let mut w = FileWriter::new(dir.path(), false);
        let swept = w.sweep_leftovers().unwrap();
        assert_eq!(swept.removed, vec![stale.display().to_string()]);
        assert!(swept.failed.is_empty());
        assert!(!stale.exists());
        for p in [&young, &foreign, &done] {
            assert!(p.exists(), "{} kept", p.display());
        }
        // The name write_atomic uses is the one the sweep recognises.
        let at = written_at(&tmp_name("k.parquet"), TMP_SUFFIX).unwrap();
        assert!(SystemTime::now().duration_since(at).unwrap() < Duration::from_secs(5));
    }

    /// An open file (FileMaxAge) lives up to FileMaxAge: its spool is a leftover only
    /// past that plus the usual margin, and only a writer with open files sweeps them.
    #[test]
    fn open_file_spools_are_swept_only_past_the_longest_an_open_file_lives() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a=1");
        fs::create_dir_all(&deep).unwrap();
        let hour = Duration::from_secs(3600);
        let at = |age: Duration| ulid::Ulid::from_datetime(SystemTime::now() - age);
        let stale = deep.join(format!(
            ".d2p.{}{SPOOL_SUFFIX}",
            at(hour + TMP_LEFTOVER_AGE + hour)
        ));
        let open = deep.join(format!(".d2p.{}{SPOOL_SUFFIX}", at(hour)));
        for p in [&stale, &open] {
            fs::write(p, b"PAR1").unwrap();
        }
        let swept = FileWriter::new(dir.path(), false)
            .sweep_leftovers()
            .unwrap();
        assert!(swept.removed.is_empty(), "no FileMaxAge, no spools of ours");
        let mut w = FileWriter::new(dir.path(), false).with_open_files(hour);
        assert_eq!(
            w.sweep_leftovers().unwrap().removed,
            vec![stale.display().to_string()]
        );
        assert!(open.exists());
        // The spool a file writer makes lies in the object's folder, and is renamed there.
        let spool = w.spool_path("a=1").unwrap().unwrap();
        assert_eq!(spool.parent(), Some(deep.as_path()));
        assert!(written_at(&spool.file_name().unwrap().to_string_lossy(), SPOOL_SUFFIX).is_some());
        fs::write(&spool, b"PAR1 data PAR1").unwrap();
        w.put_spooled("a=1/f.parquet", &spool).unwrap();
        assert!(!spool.exists());
        assert_eq!(fs::read(deep.join("f.parquet")).unwrap(), b"PAR1 data PAR1");
        assert!(
            w.put_spooled("../f.parquet", &open).is_err(),
            "never outside the root"
        );
        assert!(open.exists());
    }
}
