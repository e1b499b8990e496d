//! `make test`'s short chaos soak on PostgreSQL: about a minute of seeded
//! faults under mixed load, then the checker (`CHAOS_SEED` picks another
//! schedule).
mod common;

use std::time::Duration;

use shippy_chaos::cluster::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_soak_on_postgresql_keeps_every_promise() {
    common::soak(Store::Postgres, common::seed(27), Duration::from_secs(60)).await;
}
