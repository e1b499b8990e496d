//! Opening the database `DATABASE_URL` names, for services that keep their
//! data in PostgreSQL or MongoDB behind one repository trait
//! (vessel-service, consignment-service: [`Store`], in `either.rs`, and
//! [`dispatch!`], which makes each operation's span, with [`traced`] in
//! `traced.rs`) or in PostgreSQL only (user-service: [`open_postgres`]), and
//! telling apart the errors a caller should retry (`UNAVAILABLE`) from the
//! rest. Each service declares its store error with [`store_error!`] (in
//! `error.rs`) and decodes what a query answers with [`find_decoded`],
//! [`visit_decoded`] and [`collect_decoded`] (in `decode.rs`), on either
//! database.

pub mod batch;
mod decode;
mod either;
mod error;
mod traced;

pub use decode::{DriverError, collect_decoded, find_decoded, visit_decoded};
pub use either::{
    BoxError, DatabaseError, MongoStorage, PostgresStorage, Storage, Store, mongo_error,
    mongo_index, ping_mongo, postgres_error, unique_mongo_index,
};
pub use traced::{Answer, traced};
/// For [`dispatch!`]'s expansion in the services.
#[doc(hidden)]
pub use tracing;

use std::time::Duration;

use mongodb::{
    Client, Database,
    error::{ErrorKind, WriteFailure},
    options::ClientOptions,
};
use shippy_service::settings::SecretUrl;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// The MongoDB database used when the URL names none.
pub const DEFAULT_MONGO_DATABASE: &str = "shippy";
/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;
/// PostgreSQL's `cannot_connect_now` (starting up or shutting down).
const CANNOT_CONNECT_NOW: &str = "57P03";
/// PostgreSQL's `admin_shutdown`: this connection was ended (a restart,
/// `pg_terminate_backend`).
const ADMIN_SHUTDOWN: &str = "57P01";
/// PostgreSQL's `crash_shutdown`: the server is recovering from a crash.
const CRASH_SHUTDOWN: &str = "57P02";
/// PostgreSQL's `deadlock_detected`: this transaction was chosen to end a
/// cycle of waits; run again, it goes through.
const DEADLOCK_DETECTED: &str = "40P01";

/// A database handle, opened without contacting the server.
#[derive(Debug, Clone)]
enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres(PgPool),
    /// `mongodb://` or `mongodb+srv://`.
    Mongo(Database),
}

/// `DATABASE_URL` does not name a usable database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The scheme is neither PostgreSQL's nor MongoDB's.
    #[error("DATABASE_URL scheme `{0}` is not supported: use postgres://… or mongodb://…")]
    UnsupportedScheme(String),
    /// The service keeps its data in PostgreSQL only.
    #[error("DATABASE_URL scheme `{0}` is not supported here: this service needs postgres://…")]
    PostgresOnly(String),
    /// The URL is malformed for its database.
    #[error("DATABASE_URL is not a valid {database} URL")]
    InvalidUrl {
        /// Which database the scheme named.
        database: &'static str,
        /// What its driver said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Opens what `url` names. Nothing connects yet: the first operation does,
/// waiting at most `timeout` for a connection, so a service can start before
/// its database. Its connections are named `app_name` (MongoDB's `appName`,
/// PostgreSQL's `application_name`) unless the URL names them otherwise.
async fn open(url: &SecretUrl, timeout: Duration, app_name: &str) -> Result<Backend, OpenError> {
    match url.scheme() {
        "postgres" | "postgresql" => open_postgres(url, timeout, app_name).map(Backend::Postgres),
        "mongodb" | "mongodb+srv" => {
            let invalid = |source: mongodb::error::Error| OpenError::InvalidUrl {
                database: "MongoDB",
                source: source.into(),
            };
            let mut options = ClientOptions::parse(url.expose()).await.map_err(invalid)?;
            options.server_selection_timeout = Some(timeout);
            options.connect_timeout = Some(timeout);
            options.app_name.get_or_insert_with(|| app_name.to_owned());
            let database = options
                .default_database
                .clone()
                .unwrap_or_else(|| DEFAULT_MONGO_DATABASE.to_owned());
            let client = Client::with_options(options).map_err(invalid)?;
            Ok(Backend::Mongo(client.database(&database)))
        }
        other => Err(OpenError::UnsupportedScheme(other.to_owned())),
    }
}

/// Opens the PostgreSQL pool `url` names, for a service that keeps its data
/// in PostgreSQL only (user-service) and for [`Store::open`]: nothing connects yet,
/// the first query waits at most `timeout` for a connection. Its connections
/// carry `application_name` = `app_name` (what `pg_stat_activity` and the
/// server's log show) unless the URL (`?application_name=…`) or `PGAPPNAME`
/// names one.
pub fn open_postgres(
    url: &SecretUrl,
    timeout: Duration,
    app_name: &str,
) -> Result<PgPool, OpenError> {
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(OpenError::PostgresOnly(url.scheme().to_owned()));
    }
    let mut options: PgConnectOptions =
        url.expose()
            .parse()
            .map_err(|source: sqlx::Error| OpenError::InvalidUrl {
                database: "PostgreSQL",
                source: source.into(),
            })?;
    if options.get_application_name().is_none() {
        options = options.application_name(app_name);
    }
    Ok(PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(timeout)
        // No ping (a Sync round trip, sqlx's default) each time a connection
        // is taken from the pool: it cost every query one more round trip.
        // (sqlx 0.9 still sends one when a connection goes back.) A
        // connection the server dropped fails its next query instead, as
        // UNAVAILABLE (callers retry), and leaves the pool.
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

/// Forwards a call on a [`Store`] to the store inside, whichever it is, in
/// the span of its operation:
///
/// ```ignore
/// dispatch!(self, "get_vessel" { vessel.id = %id }, store => store.get(id))
/// ```
///
/// runs `store.get(id)` in a span named `postgres.get_vessel` or
/// `mongodb.get_vessel` (INFO; the fields between the braces as
/// `tracing::span!` takes them, `{}` for none) and records an error it
/// answers there ([`traced`]). What a service's `impl VesselStore for Store`
/// is made of: each operation's span is declared once, here, and the
/// service's `postgres.rs` and `mongo.rs` declare none for it.
#[macro_export]
macro_rules! dispatch {
    ($self:ident, $operation:literal { $($field:tt)* }, $store:ident => $call:expr) => {
        match $self {
            $crate::Store::Postgres($store) => {
                let span =
                    $crate::tracing::info_span!(concat!("postgres.", $operation), $($field)*);
                $crate::traced(span, $call).await
            }
            $crate::Store::Mongo($store) => {
                let span =
                    $crate::tracing::info_span!(concat!("mongodb.", $operation), $($field)*);
                $crate::traced(span, $call).await
            }
        }
    };
}

/// How sqlx's error begins (where in sqlx follows) when the connection
/// closed where the server's answer to the TLS request (`S` or `N`) should
/// have been.
const SERVER_HUNG_UP_ON_TLS_REQUEST: &str = "unexpected response from SSLRequest: 0x00";

/// Whether a PostgreSQL error means no connection to the database could be
/// had or kept (a part of [`postgres_unavailable`]): what a batch should
/// answer for all its items at once rather than try each alone.
pub fn postgres_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// Whether a PostgreSQL error means the database cannot be reached now.
pub fn postgres_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // The server hung up before answering the TLS request (sqlx reads
        // the end of the stream as a 0 byte): what a TCP proxy or load
        // balancer in front of a PostgreSQL that is down does. Found by
        // `make chaos` (a partition through its proxy), where it was
        // answered INTERNAL.
        sqlx::Error::Protocol(message) => message.starts_with(SERVER_HUNG_UP_ON_TLS_REQUEST),
        // The server is starting or stopping, or it ended this connection
        // (admin_shutdown, crash_shutdown): another connection may answer.
        // Or it broke a deadlock by ending this transaction: a retry passes.
        sqlx::Error::Database(database) => matches!(
            database.code().as_deref(),
            Some(CANNOT_CONNECT_NOW | ADMIN_SHUTDOWN | CRASH_SHUTDOWN | DEADLOCK_DETECTED)
        ),
        _ => false,
    }
}

/// Whether a MongoDB error means the database cannot be reached now.
pub fn mongo_unavailable(error: &mongodb::error::Error) -> bool {
    matches!(
        *error.kind,
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    )
}

/// MongoDB's `WriteConflict` (the DocumentDB stand-in names it "deadlock
/// detected"): two writes met on one index entry and this one was undone.
const WRITE_CONFLICT: i32 = 112;

/// Whether a MongoDB write was undone because it met a concurrent one
/// (`WriteConflict`): nothing of it was kept, and run again it goes through
/// (or meets what the other write left, e.g. a duplicate key).
pub fn mongo_write_conflict(error: &mongodb::error::Error) -> bool {
    match &*error.kind {
        ErrorKind::Command(command) => command.code == WRITE_CONFLICT,
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == WRITE_CONFLICT,
        _ => false,
    }
}

/// Whether a MongoDB write failed on a duplicate key.
pub fn mongo_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(
        *error.kind,
        ErrorKind::Write(WriteFailure::WriteError(ref write)) if write.code == DUPLICATE_KEY
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A listener that takes each connection's first message (the TLS
    /// request) and closes it unanswered, as a TCP proxy or load balancer
    /// does when the server behind it is down.
    async fn hangs_up() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                let _ = socket.read_exact(&mut request).await;
                let _ = socket.shutdown().await;
            }
        });
        address
    }

    /// The first message a MongoDB client opened on `query` (`?…` or "")
    /// with the name `app_name` sends: its handshake, naming the client.
    async fn mongodb_handshake(query: &str, app_name: &str) -> Vec<u8> {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: SecretUrl = format!("mongodb://{}/{query}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let Backend::Mongo(database) = open(&url, Duration::from_secs(5), app_name).await.unwrap()
        else {
            panic!("a mongodb:// URL opens MongoDB");
        };
        let ping = tokio::spawn(async move {
            let _ = database
                .run_command(mongodb::bson::doc! { "ping": 1 })
                .await;
        });
        let (mut socket, _) = listener.accept().await.unwrap();
        let length = socket.read_i32_le().await.unwrap();
        let mut message = length.to_le_bytes().to_vec();
        message.resize(usize::try_from(length).unwrap(), 0);
        socket.read_exact(&mut message[4..]).await.unwrap();
        ping.abort();
        message
    }

    /// Whether `handshake` holds the client metadata
    /// `application: { name: <name> }`.
    fn names_the_application(handshake: &[u8], name: &str) -> bool {
        let mut application = b"\x03application\0".to_vec();
        mongodb::bson::doc! { "name": name }
            .to_writer(&mut application)
            .unwrap();
        handshake
            .windows(application.len())
            .any(|window| window == application)
    }

    #[tokio::test]
    async fn mongodb_connections_are_named_after_the_caller() {
        let handshake = mongodb_handshake("", "vessel-service").await;
        assert!(names_the_application(&handshake, "vessel-service"));
    }

    #[tokio::test]
    async fn a_mongodb_url_naming_its_app_keeps_that_name() {
        let handshake = mongodb_handshake("?appName=mine", "vessel-service").await;
        assert!(names_the_application(&handshake, "mine"));
        assert!(!names_the_application(&handshake, "vessel-service"));
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_during_the_handshake_is_unavailable() {
        let url: SecretUrl = format!("postgres://shippy:secret@{}/shippy", hangs_up().await)
            .parse()
            .unwrap();
        let pool = open_postgres(&url, Duration::from_secs(5), "test").unwrap();
        let error = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
        assert!(postgres_unavailable(&error), "{error:?}");
    }
}
