//! The token `user-cli login` saves and the CLIs send: one file, readable by
//! its owner only (0600), in the user's configuration directory
//! (`$XDG_CONFIG_HOME/shippy/token` on Linux; `SHIPPY_CONFIG_DIR` overrides).

use std::{
    io,
    path::{Path, PathBuf},
};

/// Where the token lives.
pub fn token_path() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SHIPPY_CONFIG_DIR") {
        return Ok(PathBuf::from(dir).join("token"));
    }
    dirs::config_dir()
        .map(|dir| dir.join("shippy").join("token"))
        .ok_or_else(|| io::Error::other("no configuration directory: set SHIPPY_CONFIG_DIR"))
}

/// Saves `token` to `path`, readable and writable by its owner only.
pub fn save_token(path: &Path, token: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // An existing file keeps its old mode on open; set it explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        io::Write::write_all(&mut &file, token.as_bytes())
    }
    #[cfg(not(unix))]
    {
        io::Write::write_all(&mut options.open(path)?, token.as_bytes())
    }
}

/// The saved token, if there is one.
pub fn load_token(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The token a command-line program should send: `given` (from `--token` or
/// `SHIPPY_TOKEN`), else the saved one. The error is one line for the user.
pub fn resolve_token(given: Option<String>) -> Result<String, String> {
    if let Some(token) = given.filter(|token| !token.trim().is_empty()) {
        return Ok(token.trim().to_owned());
    }
    let path = token_path().map_err(|error| error.to_string())?;
    load_token(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .ok_or_else(|| "not logged in: run `user-cli login --email …` first".to_owned())
}

/// `message` as a request carrying `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    let value = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the token is not valid text; log in again".to_owned())?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_tokens_are_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("shippy-saved-{}", std::process::id()));
        let path = dir.join("nested").join("token");
        assert_eq!(load_token(&path).unwrap(), None);
        save_token(&path, "abc.def.ghi").unwrap();
        save_token(&path, "new.token.here").unwrap();
        assert_eq!(
            load_token(&path).unwrap().as_deref(),
            Some("new.token.here")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
