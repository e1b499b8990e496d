//! [`store_error!`](crate::store_error): a service's store error, the
//! failures every store shares written once.

/// Declares a service's store error (its `#[derive(Debug, thiserror::Error)]`
/// written with it, so its own messages may name fields): the variants its own contract names,
/// then the three every store has — `Unavailable` (the database cannot be
/// reached now: the caller may retry), `Corrupt` (a stored record that does
/// not decode) and `Database` (any other failure) — with their messages, a
/// `corrupt` constructor for a record that does not decode, and its
/// [`DatabaseError`](crate::DatabaseError) (an optional `impl DatabaseError
/// { … }` block adds overrides of `from_postgres` / `from_mongo`).
///
/// ```ignore
/// shippy_store::store_error! {
///     /// A store operation that did not succeed.
///     #[derive(Debug, thiserror::Error)]
///     pub enum StoreError for "vessel" {
///         /// A vessel with this id exists already.
///         #[error("a vessel with this id exists already")]
///         AlreadyExists(VesselId),
///     }
/// }
/// ```
#[macro_export]
macro_rules! store_error {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident for $noun:literal {
            $($own:tt)*
        }
        $(impl DatabaseError { $($overrides:tt)* })?
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($own)*
            /// The database cannot be reached now.
            #[error("the {} database is unreachable", $noun)]
            Unavailable(#[source] $crate::BoxError),
            /// The database holds a record this service cannot read.
            #[error("stored {noun} is invalid: {0}", noun = $noun)]
            Corrupt(String),
            /// Any other database failure.
            #[error("{} database error", $noun)]
            Database(#[source] $crate::BoxError),
        }

        impl $name {
            /// [`Corrupt`](Self::Corrupt) for the stored `what` named `id`,
            /// from why it does not decode:
            /// `.map_err(StoreError::corrupt("vessel", &row.id))`.
            pub fn corrupt<'a, Why: ::std::fmt::Display>(
                what: &'a str,
                id: &'a str,
            ) -> impl Fn(Why) -> Self + Copy + 'a {
                move |why| Self::Corrupt(format!("{what} `{id}`: {why}"))
            }
        }

        impl $crate::DatabaseError for $name {
            fn unavailable(source: $crate::BoxError) -> Self {
                Self::Unavailable(source)
            }

            fn failed(source: $crate::BoxError) -> Self {
                Self::Database(source)
            }

            $($($overrides)*)?
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{BoxError, DatabaseError};

    crate::store_error! {
        /// A test store's error.
        #[derive(Debug, thiserror::Error)]
        pub enum TestError for "widget" {
            /// A widget of its own.
            #[error("taken")]
            Taken,
            /// One whose message names its field.
            #[error("{} letters", .0.len())]
            Named(String),
        }
    }

    #[test]
    fn the_shared_variants_name_the_record() {
        let unreachable: BoxError = "refused".into();
        assert_eq!(
            TestError::unavailable(unreachable).to_string(),
            "the widget database is unreachable"
        );
        assert_eq!(
            TestError::failed("boom".into()).to_string(),
            "widget database error"
        );
        assert_eq!(TestError::Taken.to_string(), "taken");
        assert_eq!(TestError::Named("abc".into()).to_string(), "3 letters");
        let corrupt = TestError::corrupt("widget", "w-1")("no name");
        assert_eq!(
            corrupt.to_string(),
            "stored widget is invalid: widget `w-1`: no name"
        );
        assert!(matches!(corrupt, TestError::Corrupt(_)));
    }
}
