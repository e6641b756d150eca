//! Small file helpers: private files are created 0600 from the start, never
//! chmod-ed after the secret is already on disk.

use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` atomically (temporary file + rename) with mode 0600.
///
/// # Errors
/// If the file cannot be created, written or renamed.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, data, 0o600)
}

/// Writes `data` to `path` atomically with mode 0644 (certificates, policy).
///
/// # Errors
/// If the file cannot be created, written or renamed.
pub fn write_public(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, data, 0o644)
}

fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
