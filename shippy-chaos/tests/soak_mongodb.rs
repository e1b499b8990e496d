//! `make test`'s short chaos soak with vessels and consignments in MongoDB
//! (ignored without a server, like every MongoDB test; scripts/test.sh
//! includes it when one runs).
mod common;

use std::time::Duration;

use shippy_chaos::cluster::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a MongoDB server (TEST_MONGODB_URL); make test runs it"]
async fn a_seeded_soak_on_mongodb_keeps_every_promise() {
    common::soak(Store::MongoDb, common::seed(28), Duration::from_secs(60)).await;
}
