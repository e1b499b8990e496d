//! `user-service keys …`: the operator's command for the signing keys in a
//! key file or a Consul KV key, so no one edits PEM by hand.
//!
//! - `list`: each key's `kid`, the signing one first;
//! - `add`: a new key that verifies but does not sign yet (publish the next
//!   key, so every verifier knows it before it signs anything);
//! - `rotate [--kid K]`: K (an added key) signs from now on; without
//!   `--kid`, a new key is made and signs at once; older keys keep verifying;
//! - `revoke --kid K`: K is dropped (its tokens stop verifying everywhere
//!   within `KEYS_REFRESH_INTERVAL`); the last key cannot be dropped.
//!
//! A file is replaced atomically (a new file, mode 0600, renamed over it); a
//! Consul key with check-and-set, so two operators cannot lose each
//! other's change. Running services pick the change up by themselves.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use ed25519_dalek::SigningKey;
use shippy_service::settings::Secret;

use super::{consul::KvKey, kv_source};
use crate::tokens::{self, KeyError, file_source};

/// The first argument that selects this command.
pub const SUBCOMMAND: &str = "keys";

/// `user-service keys`: manage the signing keys (file or Consul KV).
#[derive(Debug, clap::Parser)]
#[command(
    name = "user-service keys",
    about = "Manage the token signing keys in a key file or a Consul KV key"
)]
pub struct KeysCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,

    /// The key file (as JWT_SIGNING_KEY_FILE).
    #[arg(
        long,
        global = true,
        env = "JWT_SIGNING_KEY_FILE",
        conflicts_with = "consul_key"
    )]
    pub file: Option<PathBuf>,

    /// The Consul KV key (as JWT_SIGNING_KEYS_CONSUL_KEY).
    #[arg(long, global = true, env = "JWT_SIGNING_KEYS_CONSUL_KEY")]
    pub consul_key: Option<String>,

    /// The Consul agent, for --consul-key.
    #[arg(long, global = true, env = "CONSUL_HTTP_ADDR")]
    pub consul_http_addr: Option<String>,

    /// An ACL token that may write the key, for --consul-key.
    #[arg(long, global = true, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_http_token: Option<Secret>,
}

/// A change to the keys, or a look at them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Lists the keys' kids, the signing one first.
    List,
    /// Adds a new key that verifies but does not sign yet.
    Add,
    /// Makes a key sign: `--kid` an added one, or a new one.
    Rotate {
        /// The kid of an added key; unset: a new key. A kid may begin with
        /// `-` (it is base64url), so the value is taken as it is.
        #[arg(long, allow_hyphen_values = true)]
        kid: Option<String>,
    },
    /// Drops a key: its tokens stop verifying.
    Revoke {
        /// The kid to drop (may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
}

/// The command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Neither or both of --file and --consul-key.
    #[error("say where the keys are: --file FILE or --consul-key KEY")]
    NoStore,
    /// The keys cannot be read or written.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Consul's KV store.
    #[error(transparent)]
    Kv(#[from] super::consul::KvError),
    /// The file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why not.
        source: std::io::Error,
    },
    /// The command cannot be done to these keys.
    #[error("{0}")]
    Refused(String),
}

/// When the first argument is `keys`, runs the command and exits (0: done;
/// 1: the reason on stderr; 2: bad usage); otherwise returns. Also answers
/// `healthcheck`, as every service binary does.
pub async fn exit_if_asked() {
    shippy_service::healthcheck::exit_if_asked().await;
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(SUBCOMMAND)) {
        return;
    }
    let command = <KeysCommand as clap::Parser>::parse_from(
        std::iter::once(std::ffi::OsString::from("user-service keys")).chain(args),
    );
    match run(&command).await {
        Ok(lines) => {
            let mut stdout = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(stdout, "{line}");
            }
            std::process::exit(0);
        }
        Err(error) => {
            eprintln!(
                "user-service keys: {}",
                shippy_service::error::chain(&error)
            );
            std::process::exit(1);
        }
    }
}

/// Runs `command`; the lines to print.
pub async fn run(command: &KeysCommand) -> Result<Vec<String>, AdminError> {
    let store = match (&command.file, &command.consul_key) {
        (Some(path), None) => Store::File(path.clone()),
        (None, Some(key)) => Store::Kv(KvKey::at(
            key,
            command.consul_http_addr.as_deref(),
            command.consul_http_token.as_ref(),
        )?),
        _ => return Err(AdminError::NoStore),
    };
    let (mut keys, version) = store.read(&command.action).await?;
    let mut said = Vec::new();
    match &command.action {
        Action::List => {}
        Action::Add => {
            let key = tokens::new_key()?;
            said.push(format!(
                "added {} (verifies; `rotate --kid` it to sign)",
                tokens::kid_of(&key)
            ));
            keys.push(key);
        }
        Action::Rotate { kid: None } => {
            let key = tokens::new_key()?;
            said.push(format!("{} signs now", tokens::kid_of(&key)));
            keys.insert(0, key);
        }
        Action::Rotate { kid: Some(kid) } => {
            let at = position(&keys, kid)?;
            let key = keys.remove(at);
            keys.insert(0, key);
            said.push(format!("{kid} signs now"));
        }
        Action::Revoke { kid } => {
            let at = position(&keys, kid)?;
            if keys.len() == 1 {
                return Err(AdminError::Refused(format!(
                    "{kid} is the only key: `rotate` first, then revoke it"
                )));
            }
            keys.remove(at);
            said.push(format!("revoked {kid}"));
            if at == 0 {
                said.push(format!(
                    "{} signs now (the revoked key was signing)",
                    tokens::kid_of(&keys[0])
                ));
            }
        }
    }
    if !matches!(command.action, Action::List) {
        store.write(&keys, version).await?;
    }
    said.extend(keys.iter().enumerate().map(|(at, key)| {
        let role = if at == 0 { "signs" } else { "verifies" };
        format!("{}\t{role}", tokens::kid_of(key))
    }));
    Ok(said)
}

fn position(keys: &[SigningKey], kid: &str) -> Result<usize, AdminError> {
    keys.iter()
        .position(|key| tokens::kid_of(key) == kid)
        .ok_or_else(|| {
            AdminError::Refused(format!(
                "no key {} here (see `keys list`)",
                shippy_service::text::excerpt(kid)
            ))
        })
}

enum Store {
    File(PathBuf),
    Kv(KvKey),
}

impl Store {
    /// The keys and the version to write over (Consul's index). A missing
    /// file or key is an empty ring to `add` and `rotate`.
    async fn read(&self, action: &Action) -> Result<(Vec<SigningKey>, u64), AdminError> {
        let may_start = matches!(action, Action::Add | Action::Rotate { kid: None });
        match self {
            Self::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok((tokens::parse_keys(&text, &file_source(path))?, 0)),
                Err(error) if may_start && error.kind() == std::io::ErrorKind::NotFound => {
                    Ok((Vec::new(), 0))
                }
                Err(source) => Err(KeyError::Read {
                    path: file_source(path),
                    source,
                }
                .into()),
            },
            Self::Kv(kv) => match kv.read(None).await {
                Ok(value) => Ok((
                    tokens::parse_keys(&value.text, &kv_source(kv.name()))?,
                    value.index,
                )),
                Err(super::consul::KvError::Missing(_)) if may_start => Ok((Vec::new(), 0)),
                Err(error) => Err(error.into()),
            },
        }
    }

    async fn write(&self, keys: &[SigningKey], version: u64) -> Result<(), AdminError> {
        let text = tokens::to_pem(keys)?;
        match self {
            Self::File(path) => write_file(path, &text).map_err(|source| AdminError::Write {
                path: path.display().to_string(),
                source,
            }),
            Self::Kv(kv) => Ok(kv.write(&text, version).await?),
        }
    }
}

/// Writes `text` to a new file beside `path` (mode 0600) and renames it
/// over `path`: readers see the old keys or the new ones, never half.
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Action, KeysCommand};

    #[test]
    fn a_kid_beginning_with_a_hyphen_is_a_value_not_an_option() {
        // A thumbprint is base64url: one kid in 32 begins with `-`.
        let kid = "-Axn6-XTz23Ph8PGHhUg3SyGWa_liBlv98Ghv5ZFdGI";
        for (words, expected) in [
            (["keys", "rotate", "--kid", kid], "rotate"),
            (["keys", "revoke", "--kid", kid], "revoke"),
        ] {
            let command = KeysCommand::try_parse_from(words)
                .unwrap_or_else(|error| panic!("{expected} --kid {kid}: {error}"));
            let parsed = match command.action {
                Action::Rotate { kid } => kid,
                Action::Revoke { kid } => Some(kid),
                other => panic!("{expected} parsed as {other:?}"),
            };
            assert_eq!(parsed.as_deref(), Some(kid), "{expected}");
        }
    }
}
