//! The embedded database's files are the service's user's alone (SPEC §11
//! "Files are private"): they hold password hashes and API-token hashes.
//!
//! SQLite creates a database file with mode 0644 (less the umask), readable
//! by every local user, and its `-wal` and `-shm` files with the database
//! file's mode. So the file is made here first, 0600, before SQLite opens
//! it, and a directory made for it is 0700. A file that others may read
//! already (made by an older version, or by hand) is narrowed to 0600 with
//! one warning, its `-wal` and `-shm` with it; if that is not allowed (the
//! file belongs to another user), start-up stops with one line. Existing
//! directories are left as they are: the file's own mode guards it.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of the database and its companions.
const FILE_MODE: u32 = 0o600;

/// The mode of a directory made for the database.
const DIR_MODE: u32 = 0o700;

/// Whether the database of a `sqlite:` URL is a file, and if so whether
/// SQLite may create it (`mode=rwc`); `None` for an in-memory database.
/// Read as sqlx reads the URL.
pub fn on_disk(url: &str) -> Option<bool> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mode = form_urlencoded::parse(params.as_bytes())
        .filter(|(key, _)| key == "mode")
        .last()
        .map(|(_, mode)| mode.into_owned());
    let mode = mode.as_deref();
    (database != ":memory:" && mode != Some("memory")).then_some(mode == Some("rwc"))
}

/// Makes the database at `path` private: with `create`, makes it (and its
/// missing directories) if it does not exist; narrows what exists.
pub fn make_private(path: &Path, create: bool) -> Result<(), String> {
    if create {
        create_file(path)?;
    }
    for file in [
        path.to_path_buf(),
        companion(path, "-wal"),
        companion(path, "-shm"),
    ] {
        narrow(&file)?;
    }
    Ok(())
}

/// Creates an empty file 0600 (SQLite takes an empty file as an empty
/// database); one that exists, or that another replica creates meanwhile,
/// is left to [`narrow`].
fn create_file(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// `path` with `suffix` appended to its file name, as SQLite names the
/// write-ahead log and the shared-memory index.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Narrows an existing file that its group or others may use to 0600.
fn narrow(path: &Path) -> Result<(), String> {
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)).map_err(|e| {
        format!(
            "{} is readable by other users (mode {mode:03o}) and cannot be made private \
             ({e}); run tokengate as its owner, or `chmod 600` it",
            path.display()
        )
    })?;
    tracing::warn!(
        file = %path.display(),
        was = format!("{mode:03o}"),
        "the database file was readable by other users; made it 0600"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tokengate-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn urls_say_whether_there_is_a_file_to_create() {
        assert_eq!(on_disk(crate::config::DEFAULT_DATABASE_URL), Some(true));
        assert_eq!(on_disk("sqlite:///var/lib/tg/a.db?mode=rwc"), Some(true));
        assert_eq!(on_disk("sqlite://a.db"), Some(false));
        assert_eq!(on_disk("sqlite://a.db?mode=ro"), Some(false));
        assert_eq!(on_disk("sqlite::memory:"), None);
        assert_eq!(on_disk("sqlite://a.db?mode=memory"), None);
    }

    #[test]
    fn a_new_database_and_its_new_directory_are_private() {
        let root = temp_dir();
        let path = root.join("data/nested/tokengate.db");
        make_private(&path, true).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.join("data/nested")), 0o700);
        assert_eq!(mode(&root.join("data")), 0o700);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "empty");
        // Again (a restart, another replica): nothing changes.
        make_private(&path, true).unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_existing_readable_database_is_narrowed_with_its_wal_and_shm() {
        let root = temp_dir();
        std::fs::set_permissions(&root, Permissions::from_mode(0o755)).unwrap();
        let path = root.join("tokengate.db");
        for file in [&path, &companion(&path, "-wal"), &companion(&path, "-shm")] {
            std::fs::write(file, b"").unwrap();
            std::fs::set_permissions(file, Permissions::from_mode(0o644)).unwrap();
        }
        make_private(&path, false).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&companion(&path, "-wal")), 0o600);
        assert_eq!(mode(&companion(&path, "-shm")), 0o600);
        assert_eq!(
            mode(&root),
            0o755,
            "an existing directory is the operator's"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// What SQLite then makes beside the file follows its mode.
    #[tokio::test]
    async fn the_service_opens_a_private_database_and_sqlite_keeps_its_wal_private() {
        use crate::config::{DatabaseSettings, Secret};
        use crate::db::DurableStore;
        let root = temp_dir();
        let path = root.join("db/tokengate.db");
        let settings = DatabaseSettings {
            url: Secret::new(format!("sqlite://{}?mode=rwc", path.display())),
            ..DatabaseSettings::default()
        };
        let store = super::super::SqliteStore::open(&settings).unwrap();
        store.migrate().await.unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.join("db")), 0o700);
        let wal = companion(&path, "-wal");
        assert!(wal.exists(), "WAL mode, connections open");
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&companion(&path, "-shm")), 0o600);
        drop(store);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn without_create_a_missing_database_is_left_missing() {
        let root = temp_dir();
        let path = root.join("missing/tokengate.db");
        make_private(&path, false).unwrap();
        assert!(!path.exists() && !root.join("missing").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
