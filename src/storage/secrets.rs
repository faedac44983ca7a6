//! Connection secrets (passwords, private keys): kept out of statements' text, the log,
//! checkpoints and logs, in one file of the data directory only its owner can read.
//!
//! A statement that gives a secret Kafka property inline (`'sasl.password' = '...'`) is stored
//! as `'sasl.password' = SECRET '<id>'` (see `sql::streaming`); the value is written here under
//! that id before the statement reaches the log, and recovery finds it here again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::directory::{io_error, sync_directory, write_file_durably};
use crate::error::StorageError;

/// The file in the data directory that holds the secrets (mode 0600, like every file there).
pub const SECRETS_FILE: &str = "SECRETS";

/// A secret's value. Its `Debug` prints `****`, so a statement, an endpoint or an error that
/// holds one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the Kafka client that authenticates with it and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("****")
    }
}

/// Whether a Kafka (librdkafka) property holds a secret: its value never appears in a stored
/// statement, an error message or a catalog view.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || matches!(
            key.as_str(),
            "ssl.key.pem" | "sasl.oauthbearer.config" | "sasl.jaas.config"
        )
}

/// The secrets of one server, by id.
#[derive(Debug)]
pub struct SecretStore {
    /// `None` for a server without a data directory: secrets live as long as it does.
    path: Option<PathBuf>,
    /// Every secret known; statements that store one take the lock for the write of the whole
    /// file, so the file always holds at least what any statement has been told is stored.
    values: Mutex<BTreeMap<String, SecretValue>>,
}

impl SecretStore {
    pub fn in_memory() -> Self {
        Self {
            path: None,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// The secrets of the data directory at `root` (none yet when it has no secrets file).
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let path = root.join(SECRETS_FILE);
        let values = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<BTreeMap<String, String>>(&bytes)
                .map_err(|error| StorageError::Corrupted {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                })?
                .into_iter()
                .map(|(id, value)| (id, SecretValue(value)))
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(io_error("read", &path, &error)),
        };
        Ok(Self {
            path: Some(path),
            values: Mutex::new(values),
        })
    }

    pub fn get(&self, id: &str) -> Option<SecretValue> {
        self.lock().get(id).cloned()
    }

    /// Stores `value` under `id`; when this returns Ok it survives a crash.
    pub fn store(&self, id: &str, value: &SecretValue) -> Result<(), StorageError> {
        let mut values = self.lock();
        if values.get(id) == Some(value) {
            return Ok(());
        }
        values.insert(id.to_string(), value.clone());
        let Some(path) = &self.path else {
            return Ok(());
        };
        let plain: BTreeMap<&str, &str> = values
            .iter()
            .map(|(id, value)| (id.as_str(), value.expose()))
            .collect();
        let bytes = serde_json::to_vec_pretty(&plain).map_err(|error| StorageError::Io {
            action: "encode",
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        // Written beside and renamed over, so a crash leaves the old file or the new one.
        let temporary = path.with_extension("tmp");
        let written = write_file_durably(&temporary, &bytes).and_then(|()| {
            std::fs::rename(&temporary, path).map_err(|error| io_error("rename", path, &error))
        });
        if let Err(error) = written {
            values.remove(id);
            return Err(error);
        }
        match path.parent() {
            Some(directory) => sync_directory(directory),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SecretValue>> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_survive_reopening_and_never_print() {
        let root = std::env::temp_dir().join(format!("tributary-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("directory");
        let store = SecretStore::open(&root).expect("open");
        let value = SecretValue::new("hunter2".into());
        store.store("secret-1", &value).expect("store");
        assert_eq!(format!("{value:?}"), "****");
        let reopened = SecretStore::open(&root).expect("reopen");
        assert_eq!(reopened.get("secret-1"), Some(value));
        assert_eq!(reopened.get("secret-2"), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join(SECRETS_FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn passwords_and_keys_are_secret_other_properties_are_not() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "SSL.KEYSTORE.PASSWORD",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
        ] {
            assert!(is_secret_property(key), "{key}");
        }
        for key in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret_property(key), "{key}");
        }
    }
}
