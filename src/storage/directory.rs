//! The data directory: its format marker, the lock that keeps a second server out, and the
//! crash-safe file operations the log and checkpoints are built from. Everything in it is its
//! owner's only (directories 0700, files 0600): it holds users' data and connection secrets.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// The on-disk format this build writes and reads. Any change to the log or checkpoint
/// encoding bumps it; a directory in another format is refused, never misread.
/// 2: keyed operators checkpoint through their exchange (copy count, then each copy).
/// 3: a materialized view's record holds its dataflow plan; operator states are filed by
/// operator id.
/// 4: operator states are filed by operator id and worker, with the number of workers.
pub const FORMAT_VERSION: u32 = 4;

const FORMAT_FILE: &str = "FORMAT";
const LOCK_FILE: &str = "LOCK";
const INSTANCE_FILE: &str = "INSTANCE";

/// An open, locked data directory. The lock is released when this is dropped (or the process
/// dies), so a crashed server never blocks its successor.
#[derive(Debug)]
pub struct DataDirectory {
    root: PathBuf,
    /// Made up when the directory is created: names what belongs to this directory outside
    /// it (the Kafka transactional ids of its sinks).
    instance: String,
    /// Held for the life of the server: an exclusive advisory lock on `LOCK`.
    _lock: File,
}

impl DataDirectory {
    /// Opens `root`, creating it (and its format marker) if new. Fails when another server holds
    /// it, when it was written in another format, or when it cannot be written.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        create_private_directory(root)?;
        // A directory made by an older build, or by hand, is closed to others too.
        restrict_permissions(root)?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&lock_path)
            .map_err(|error| io_error("open", &lock_path, &error))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Io {
                    action: "lock",
                    path: root.display().to_string(),
                    reason: "another Tributary server is using this data directory".into(),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(io_error("lock", &lock_path, &error));
            }
        }
        let format_path = root.join(FORMAT_FILE);
        let expected = format!("tributary data format {FORMAT_VERSION}\n");
        match std::fs::read_to_string(&format_path) {
            Ok(found) if found == expected => {}
            Ok(found) => {
                return Err(StorageError::IncompatibleFormat {
                    path: root.display().to_string(),
                    found: found.trim().to_string(),
                    expected: FORMAT_VERSION,
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::read_dir(root)
                    .map_err(|error| io_error("read", root, &error))?
                    .flatten()
                    .any(|entry| entry.file_name() != LOCK_FILE)
                {
                    return Err(StorageError::IncompatibleFormat {
                        path: root.display().to_string(),
                        found: "unknown (files without a FORMAT marker)".into(),
                        expected: FORMAT_VERSION,
                    });
                }
                write_file_durably(&format_path, expected.as_bytes())?;
            }
            Err(error) => return Err(io_error("read", &format_path, &error)),
        }
        let instance_path = root.join(INSTANCE_FILE);
        let instance = match std::fs::read_to_string(&instance_path) {
            Ok(instance) => instance.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let instance = new_instance_id();
                write_file_durably(&instance_path, instance.as_bytes())?;
                instance
            }
            Err(error) => return Err(io_error("read", &instance_path, &error)),
        };
        let directory = Self {
            root: root.to_path_buf(),
            instance,
            _lock: lock,
        };
        for sub in [directory.log_directory(), directory.checkpoint_directory()] {
            create_private_directory(&sub)?;
        }
        sync_directory(root)?;
        Ok(directory)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn log_directory(&self) -> PathBuf {
        self.root.join("wal")
    }

    pub fn checkpoint_directory(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
}

fn new_instance_id() -> String {
    random_id("")
}

/// A fresh random id after `prefix`: std's per-process random hash keys (fresh for each
/// hasher), the clock and the process id.
pub fn random_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{prefix}{:016x}", hasher.finish())
}

pub fn io_error(action: &'static str, path: &Path, error: &std::io::Error) -> StorageError {
    StorageError::Io {
        action,
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// The mode of every file the server writes in its data directory.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The mode of every directory it makes there.
pub const PRIVATE_DIRECTORY_MODE: u32 = 0o700;

/// Creates `path` and its missing parents, readable by the server's user only.
pub fn create_private_directory(path: &Path) -> Result<(), StorageError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIRECTORY_MODE)
        .create(path)
        .map_err(|error| io_error("create", path, &error))
}

/// Sets everything under `root` (and `root`) to the private modes; symbolic links are left.
fn restrict_permissions(root: &Path) -> Result<(), StorageError> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata =
            std::fs::symlink_metadata(&path).map_err(|error| io_error("read", &path, &error))?;
        let mode = if metadata.is_dir() {
            for entry in
                std::fs::read_dir(&path).map_err(|error| io_error("read", &path, &error))?
            {
                pending.push(
                    entry
                        .map_err(|error| io_error("read", &path, &error))?
                        .path(),
                );
            }
            PRIVATE_DIRECTORY_MODE
        } else if metadata.is_file() {
            PRIVATE_FILE_MODE
        } else {
            continue;
        };
        if metadata.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|error| io_error("restrict", &path, &error))?;
        }
    }
    Ok(())
}

/// Writes a whole file (readable by the server's user only) and syncs it; the caller syncs the
/// directory that names it.
pub fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|error| io_error("create", path, &error))?;
    file.write_all(bytes)
        .map_err(|error| io_error("write", path, &error))?;
    file.sync_all()
        .map_err(|error| io_error("sync", path, &error))
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_directory(path: &Path) -> Result<(), StorageError> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error("sync", path, &error))
}

/// The numbered entries of a directory (`00000000000000000042`, `00000000000000000042.log`),
/// ascending; other names are ignored.
pub fn numbered_entries(path: &Path, suffix: &str) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|error| io_error("read", path, &error))? {
        let entry = entry.map_err(|error| io_error("read", path, &error))?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|name| name.strip_suffix(suffix))
            .filter(|stem| stem.len() == 20)
            .and_then(|stem| stem.parse::<u64>().ok())
        else {
            continue;
        };
        entries.push((number, entry.path()));
    }
    entries.sort();
    Ok(entries)
}

/// The name of entry `number`: zero-padded so names sort like numbers.
pub fn numbered_name(number: u64, suffix: &str) -> String {
    format!("{number:020}{suffix}")
}
