//! [`store_contract!`](crate::store_contract): one contract test suite of a
//! repository trait, run against every store; [`on_each_store!`](crate::on_each_store):
//! scenarios run as tests on each store.

/// The contract test suite of a repository trait, run against every store:
/// `store_contract!(postgres: make_pg, mongodb: make_mongo, cases: [a, b])`
/// makes `postgres::a`, `mongodb::a`, … where each case is an
/// `async fn(impl Trait)` and each maker an `async fn() -> Store` of the
/// calling module.
///
/// The MongoDB cases are marked ignored (a plain `cargo test` without a
/// MongoDB server lists them as such); `make test` includes them whenever
/// `cargo dev infra` started a server, and an included case without one
/// fails, saying what to set ([`mongodb_admin_url`](crate::mongodb_admin_url)).
#[macro_export]
macro_rules! store_contract {
    (postgres: $postgres:ident, mongodb: $mongodb:ident, cases: [$($case:ident),* $(,)?]) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::$postgres().await).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test]
                #[ignore = "MongoDB store: needs TEST_MONGODB_URL; make test includes it"]
                async fn $case() {
                    super::$case(super::$mongodb().await).await;
                }
            )*
        }
    };
}

/// Scenarios run as tests on each store: `on_each_store! { #[tokio::test]
/// a_user_ships, #[tokio::test] listing_pages }` makes `postgres::a_user_ships`
/// running `a_user_ships(StoreKind::Postgres)` and `on_mongodb::a_user_ships`
/// running it on MongoDB (marked ignored, as the MongoDB cases of
/// [`store_contract!`](crate::store_contract) are), and so on; each scenario
/// is an `async fn(StoreKind)` of the calling module, and the attributes
/// given (the test attribute) go on both of its tests. One invocation a
/// module.
#[macro_export]
macro_rules! on_each_store {
    ($($(#[$attr:meta])* $scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                $(#[$attr])*
                async fn $scenario() {
                    super::$scenario($crate::StoreKind::Postgres).await;
                }
            )*
        }

        mod on_mongodb {
            $(
                $(#[$attr])*
                #[ignore = "MongoDB store: needs TEST_MONGODB_URL; make test includes it"]
                async fn $scenario() {
                    super::$scenario($crate::StoreKind::MongoDb).await;
                }
            )*
        }
    };
}
