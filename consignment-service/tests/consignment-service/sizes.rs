//! The size limits, end to end: the largest consignment accepted and one
//! byte more refused (counted as stored, ids included), and pages of
//! listings that stay within what a default client reads.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shippy_harness::{Cluster, assert_status, bearer, refused, shipping::page_request};
use shippy_proto::consignment::v1::{Consignment, Container};
use tonic::Code;

/// A consignment of `containers` containers, each with a 400-byte origin.
fn big(containers: usize) -> Consignment {
    Consignment {
        description: "Bulk".into(),
        weight: 1_000,
        containers: (0..containers)
            .map(|_| Container {
                customer_id: "c".into(),
                origin: "o".repeat(400),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_largest_consignment_is_accepted_and_a_bigger_one_is_invalid_naming_the_limit() {
    use prost::Message as _;
    let cluster = Cluster::start().await;
    cluster.create_vessel(10_000, 1_000_000).await;
    let (_, token) = cluster.user("bulk@example.com").await;

    let largest = big(2_600);
    assert!(
        largest.encoded_len() >= 1024 * 1024,
        "{}",
        largest.encoded_len()
    );
    cluster
        .create(&token, largest)
        .await
        .expect("2 600 containers, over 1 MiB, are accepted");

    let bigger = big(5_150);
    assert!(
        bigger.encoded_len() > 2 * 1024 * 1024,
        "{}",
        bigger.encoded_len()
    );
    // Over the limit.
    refused(
        cluster.create(&token, bigger).await,
        Code::InvalidArgument,
        &["2097152"],
    );
}

#[tokio::test]
async fn pages_end_before_a_size_default_clients_cannot_read() {
    let cluster = Cluster::start().await;
    // Room for all five: each takes 2 600 containers of it.
    cluster.create_vessel(20_000, 1_000_000).await;
    let (_, token) = cluster.user("lister@example.com").await;
    for _ in 0..5 {
        cluster.create(&token, big(2_600)).await.expect("created");
    }
    // Five of about 1.06 MB: one page would be over 5 MB, past the 4 MiB
    // every default client accepts.
    let pages = cluster.pages(&token, 100).await;
    assert!(pages.iter().all(|page| !page.is_empty()), "{pages:?}");
    let seen: usize = pages.iter().map(Vec::len).sum();
    assert_eq!(seen, 5, "every consignment once");
    assert!(pages.len() >= 2, "the page ended early: {}", pages.len());
}

/// The 2 MiB limit holds for the consignment as stored, container ids and
/// user ids the service fills in included (the probe stored 2 730 188 B):
/// the largest input accepted stores within 2 MiB, and one byte more is
/// `INVALID_ARGUMENT`.
#[tokio::test]
async fn the_largest_accepted_consignment_stores_within_2_mib_and_one_byte_more_is_invalid() {
    use prost::Message as _;

    const LIMIT: usize = 2 * 1024 * 1024;
    const CONTAINERS: usize = 3_600;
    let cluster = Cluster::start().await;
    cluster.create_vessel(1_000_000, 1_000_000).await;
    let (_, token) = cluster.user("limit@example.com").await;
    // `extra` more bytes of origin than the base, spread over the
    // containers; ids and user ids left for the service to fill in.
    let padded = |extra: usize| Consignment {
        description: "Bulk".into(),
        weight: 1,
        containers: (0..CONTAINERS)
            .map(|n| Container {
                customer_id: "c".into(),
                origin: "o".repeat(300 + extra.saturating_sub(n * 200).min(200)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut shipping = cluster.shipping();
    let mut attempt = async |extra: usize| {
        shipping
            .create_consignment(bearer(padded(extra), &token))
            .await
            .map(|response| response.into_inner().consignment.unwrap())
    };
    let (mut accepted, mut refused) = (0, CONTAINERS * 200);
    let mut largest = attempt(accepted).await.expect("the smallest fits");
    // The largest does not fit.
    shippy_harness::refused(attempt(refused).await, Code::InvalidArgument, &[]);
    while refused - accepted > 1 {
        let middle = accepted + (refused - accepted) / 2;
        match attempt(middle).await {
            Ok(stored) => {
                accepted = middle;
                largest = stored;
            }
            Err(status) => {
                assert_status(&status, Code::InvalidArgument, &["2097152"]);
                refused = middle;
            }
        }
    }
    let sent = padded(accepted).encoded_len();
    let stored = largest.encoded_len();
    eprintln!("largest accepted: {sent} B sent, {stored} B stored");
    assert!(stored <= LIMIT, "stored {stored} B");
    assert!(stored > LIMIT - 1_024, "the bound is tight: {stored} B");
    // Read back as GetConsignments answers it: the same size.
    let listed = cluster
        .shipping()
        .get_consignments(page_request(&token, 1, ""))
        .await
        .unwrap()
        .into_inner()
        .consignments;
    assert_eq!(listed[0].id, largest.id);
    assert!(listed[0].encoded_len() <= LIMIT);
}
