//! `make test`'s short chaos soaks: a minute of seeded faults under mixed
//! load, then the checker (`CHAOS_SEED` picks another schedule). The seeds
//! are chosen for their minute's schedule: on PostgreSQL, with the services
//! finding each other through Consul, 228 kills consignment-, email- and
//! vessel-service, the gateway and Consul, pauses PostgreSQL (on `make
//! test`'s own server) and Consul, and cuts every database link; on MongoDB,
//! 132 kills NATS, email-, vessel- and user-service and the gateway, and
//! partitions the rest.

use std::time::Duration;

use shippy_chaos::cluster::Store;

use crate::common;

/// A minute of seeded faults on `store` (seed `seed` unless `CHAOS_SEED`
/// says another), one soak at a time; with `consul`, the services find each
/// other through Consul.
async fn a_minute_on(store: Store, seed: u64, consul: bool) {
    let _turn = common::one_at_a_time().await;
    common::soak(store, common::seed(seed), Duration::from_secs(60), consul).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_soak_on_postgresql_keeps_every_promise() {
    a_minute_on(Store::Postgres, 228, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a MongoDB server (TEST_MONGODB_URL); make test runs it"]
async fn a_seeded_soak_on_mongodb_keeps_every_promise() {
    a_minute_on(Store::MongoDb, 132, false).await;
}
