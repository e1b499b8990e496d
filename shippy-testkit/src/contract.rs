//! [`store_contract!`](crate::store_contract): one contract test suite of a
//! repository trait, run against every store.

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
