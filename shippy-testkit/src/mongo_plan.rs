//! Which indexes a MongoDB query would use, from the server's `explain`.

use shippy_service::settings::SecretUrl;

/// How a MongoDB server plans a query: what its winning plan scans.
#[derive(Debug)]
pub struct MongoQueryPlan {
    /// The names of the indexes the winning plan scans (`IXSCAN` stages).
    pub index_scans: Vec<String>,
    /// Whether the winning plan reads the whole collection (`COLLSCAN`).
    pub collection_scan: bool,
    /// The server's whole `explain` answer, for failure messages.
    pub explain: mongodb::bson::Document,
}

impl MongoQueryPlan {
    /// Asserts the plan scans `index` and never the whole collection;
    /// `query` names the query in the failure.
    #[track_caller]
    pub fn assert_scans(&self, index: &str, query: &str) {
        assert!(
            !self.collection_scan && self.index_scans.iter().any(|name| name == index),
            "{query} should scan {index}, not the collection: {self:#?}"
        );
    }
}

/// Asks the MongoDB server at `url` (its database) how it would run
/// `find(filter).sort(sort).limit(limit)` on `collection` (`explain`, query
/// planner verbosity), without running it.
pub async fn mongodb_query_plan(
    url: &SecretUrl,
    collection: &str,
    filter: mongodb::bson::Document,
    sort: mongodb::bson::Document,
    limit: i64,
) -> MongoQueryPlan {
    use mongodb::bson::{Bson, doc};

    fn walk(value: &Bson, plan: &mut MongoQueryPlan) {
        match value {
            Bson::Document(document) => {
                match document.get_str("stage") {
                    Ok("IXSCAN") => plan
                        .index_scans
                        .push(document.get_str("indexName").unwrap_or("?").to_owned()),
                    Ok("COLLSCAN") => plan.collection_scan = true,
                    _ => {}
                }
                document.values().for_each(|value| walk(value, plan));
            }
            Bson::Array(values) => values.iter().for_each(|value| walk(value, plan)),
            _ => {}
        }
    }

    let client = mongodb::Client::with_uri_str(url.expose())
        .await
        .expect("a valid MongoDB URL");
    let database = client
        .default_database()
        .expect("the MongoDB URL names a database");
    let explain = database
        .run_command(doc! {
            "explain": {
                "find": collection,
                "filter": filter,
                "sort": sort,
                "limit": limit,
            },
            "verbosity": "queryPlanner",
        })
        .await
        .expect("explain");
    let winning = explain
        .get_document("queryPlanner")
        .ok()
        .and_then(|planner| planner.get("winningPlan"))
        .cloned()
        .unwrap_or_else(|| panic!("explain answered no queryPlanner.winningPlan: {explain}"));
    let mut plan = MongoQueryPlan {
        index_scans: Vec::new(),
        collection_scan: false,
        explain,
    };
    walk(&winning, &mut plan);
    plan
}
