//! A database's answer decoded into a service's type, whichever database
//! answered: a driver error becomes the service's store error
//! ([`DatabaseError`]), a row or document that does not decode is what its
//! `TryFrom` says.

use std::ops::ControlFlow;

use futures::{TryStream, TryStreamExt as _};

use crate::DatabaseError;

/// A database driver's error (sqlx's or MongoDB's), turned into a service's
/// store error as [`DatabaseError`] says for that database.
pub trait DriverError {
    /// This error as the service's.
    fn into_store<E: DatabaseError>(self) -> E;
}

impl DriverError for sqlx::Error {
    fn into_store<E: DatabaseError>(self) -> E {
        E::from_postgres(self)
    }
}

impl DriverError for mongodb::error::Error {
    fn into_store<E: DatabaseError>(self) -> E {
        E::from_mongo(self)
    }
}

/// The one row or document a query answers (sqlx's `fetch_optional`,
/// MongoDB's `find_one`, with any sort or projection), decoded into the
/// service's type: `None` when nothing matched, a driver error through
/// [`DriverError`], one that does not decode as its `TryFrom` says.
pub async fn find_decoded<R, T, E, X>(
    find: impl IntoFuture<Output = Result<Option<R>, X>>,
) -> Result<Option<T>, E>
where
    T: TryFrom<R, Error = E>,
    E: DatabaseError,
    X: DriverError,
{
    find.await
        .map_err(X::into_store)?
        .map(T::try_from)
        .transpose()
}

/// Hands `each` the rows or documents of `rows` (sqlx's `fetch`, a MongoDB
/// cursor), decoded, one at a time as they arrive, until it says
/// [`ControlFlow::Break`] or they run out: a stop leaves the rest unread.
pub async fn visit_decoded<S, T, E>(
    mut rows: S,
    mut each: impl FnMut(T) -> ControlFlow<()>,
) -> Result<(), E>
where
    S: TryStream + Unpin,
    S::Error: DriverError,
    T: TryFrom<S::Ok, Error = E>,
    E: DatabaseError,
{
    while let Some(row) = rows.try_next().await.map_err(DriverError::into_store)? {
        if each(T::try_from(row)?).is_break() {
            break;
        }
    }
    Ok(())
}

/// All the rows or documents of `rows`, decoded.
pub async fn collect_decoded<S, T, E>(rows: S) -> Result<Vec<T>, E>
where
    S: TryStream + Unpin,
    S::Error: DriverError,
    T: TryFrom<S::Ok, Error = E>,
    E: DatabaseError,
{
    let mut all = Vec::new();
    visit_decoded(rows, |decoded| {
        all.push(decoded);
        ControlFlow::Continue(())
    })
    .await?;
    Ok(all)
}
