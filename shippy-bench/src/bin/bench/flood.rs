//! The login flood: GetConsignments at a few in flight alone, then while
//! Auth keeps user-service's cores busy with bcrypt (tonic clients: these are
//! latency figures at low load, which h2load does not give per run).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use hdrhistogram::Histogram;
use shippy_proto::{
    consignment::v1::{GetRequest, shipping_service_client::ShippingServiceClient},
    user::v1::{User, user_service_client::UserServiceClient},
};
use tonic::{Status, transport::Channel};

use crate::{
    Args,
    fixtures::{Fixtures, PASSWORD, bearer},
    report::Probe,
};

/// The flood's three probes: Auth alone, GetConsignments alone, and
/// GetConsignments while Auth saturates user-service.
#[derive(Debug)]
pub struct Flood {
    pub auth_alone: Probe,
    pub unloaded: Probe,
    pub loaded: Probe,
}

pub async fn login_flood(args: &Args, fixtures: &Fixtures) -> anyhow::Result<Flood> {
    eprintln!("login flood");
    let duration = Duration::from_secs(args.seconds);
    let list_token = fixtures.lister.clone();
    let get_consignments = move |channel: Channel| {
        let token = list_token.clone();
        async move {
            let answer = ShippingServiceClient::new(channel)
                .get_consignments(bearer(
                    GetRequest {
                        page_size: 20,
                        page_token: String::new(),
                    },
                    &token,
                ))
                .await?;
            if answer.into_inner().consignments.len() == 20 {
                Ok(())
            } else {
                Err(Status::internal("expected 20 consignments"))
            }
        }
    };
    let auth = {
        let next = Arc::new(AtomicUsize::new(0));
        let emails = fixtures.auth_emails.clone();
        move |channel: Channel| {
            let turn = next.fetch_add(1, Ordering::Relaxed);
            let email = emails[turn % emails.len()].clone();
            async move {
                UserServiceClient::new(channel)
                    .auth(User {
                        email,
                        password: PASSWORD.into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
        }
    };
    let (users, shipping) = (&fixtures.users, &fixtures.shipping);
    let auth_alone = measure("Auth", users, args.auth_concurrency, duration, auth.clone()).await;
    let unloaded = measure(
        "GetConsignments (probe, alone)",
        shipping,
        args.probe_concurrency,
        duration,
        get_consignments.clone(),
    )
    .await;
    let saturating = tokio::spawn({
        let users = users.clone();
        let concurrency = args.auth_concurrency;
        async move { measure("Auth (saturating)", &users, concurrency, duration, auth).await }
    });
    let loaded = measure(
        "GetConsignments (probe, under Auth)",
        shipping,
        args.probe_concurrency,
        duration,
        get_consignments,
    )
    .await;
    let _ = saturating.await;
    for probe in [&auth_alone, &unloaded, &loaded] {
        if probe.errors > 0 || probe.requests == 0 {
            bail!(
                "{}: {} of {} calls failed",
                probe.name,
                probe.errors,
                probe.requests
            );
        }
    }
    Ok(Flood {
        auth_alone,
        unloaded,
        loaded,
    })
}

/// An empty latency histogram (microseconds, 3 significant figures).
#[allow(clippy::expect_used)] // 3 significant figures is always a valid precision.
fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant figures")
}

/// Runs `call` from `concurrency` workers for `duration` (after a short
/// warm-up), and measures.
async fn measure<F, Fut>(
    name: &str,
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
    call: F,
) -> Probe
where
    F: Fn(Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send,
{
    let call = Arc::new(call);
    let warm_up = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warm_up;
    let end = measure_from + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let channel = channels[worker % channels.len()].clone();
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = histogram();
            let (mut requests, mut shed, mut errors) = (0u64, 0u64, 0u64);
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let result = call(channel.clone()).await;
                if began < measure_from {
                    continue;
                }
                match result {
                    // Only answers count as throughput and latency.
                    Ok(()) => {
                        requests += 1;
                        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = histogram.record(micros.max(1));
                    }
                    // Load shed by the service (user-service's login throttle
                    // or its bounded bcrypt queue): what a flood is meant to
                    // meet, not a failure. A client told to retry shortly
                    // waits a little, as ours do, rather than spin.
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                        ) =>
                    {
                        shed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => errors += 1,
                }
            }
            (histogram, requests, shed, errors)
        }));
    }
    let mut histogram = histogram();
    let (mut requests, mut shed, mut errors) = (0u64, 0u64, 0u64);
    for worker in workers {
        if let Ok((worker_histogram, worker_requests, worker_shed, worker_errors)) = worker.await {
            let _ = histogram.add(worker_histogram);
            requests += worker_requests;
            shed += worker_shed;
            errors += worker_errors;
        }
    }
    let figures = Probe {
        name: name.to_owned(),
        concurrency,
        requests,
        shed,
        errors,
        requests_per_second: requests as f64 / duration.as_secs_f64(),
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
    };
    eprintln!(
        "  {:<32} {:>9.1} answered/s  p50 {:>8.2} ms  p99 {:>8.2} ms  shed {}  errors {}",
        figures.name,
        figures.requests_per_second,
        figures.p50_ms,
        figures.p99_ms,
        figures.shed,
        figures.errors
    );
    figures
}
