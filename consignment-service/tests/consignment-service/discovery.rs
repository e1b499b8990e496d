//! Discovery through a real Consul agent (1.8.7, a test's own dev agent):
//! registration, deregistration, balancing across instances, and calls that
//! keep working while an instance or Consul itself goes away; with ACLs (as
//! `make dev` and compose run Consul), only a service's own token registers
//! its name; an instance restarted on its address replaces its registration.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use shippy_harness::{
    bearer, create_user, login, settings,
    shipping::one_container_of,
    spawn::{self, Service as Running},
};
use shippy_proto::consignment::v1::{Consignment, shipping_service_client::ShippingServiceClient};
use shippy_service::{
    discovery::{
        DiscoveryArgs,
        consul::{Check, ConsulClient, ConsulError, Registration},
    },
    settings::SecretUrl,
};
use shippy_testkit::{
    ConsulAgent, ServiceProcess, fresh_postgres_database, http_get, init_test_logging,
};

/// Discovery through `consul` for `service`, with its token when the agent has ACLs.
fn consul_args(consul: &ConsulAgent, service: &str) -> DiscoveryArgs {
    DiscoveryArgs {
        consul_http_addr: Some(consul.http_addr()),
        advertise_addr: None,
        consul_http_token: consul.token(service),
    }
}

async fn vessel_service(database_url: SecretUrl, discovery: DiscoveryArgs) -> Running {
    init_test_logging();
    // Only `Create` needs user-service's keys; these tests never create.
    let mut settings = settings::vessel(database_url, "http://127.0.0.1:9".into());
    settings.account_max_containers = vessel_service::domain::AccountQuota::DEFAULT.containers;
    settings.account_max_weight = vessel_service::domain::AccountQuota::DEFAULT.weight;
    settings.serve.discovery = discovery;
    spawn::vessel(&settings).await.serving().await
}

/// Waits until Consul lists exactly `count` passing instances of `service`
/// (asking as consignment-service, with its token when the agent has ACLs).
async fn wait_for_instances(consul: &ConsulAgent, service: &str, count: usize) -> Vec<String> {
    let token = consul.token("consignment-service");
    let client = ConsulClient::new(&consul.http_addr(), token.as_ref());
    let mut urls = Vec::new();
    for _ in 0..150 {
        if let Ok(found) = client.healthy(service, None, Duration::ZERO).await {
            urls = found
                .instances
                .into_iter()
                .map(|instance| instance.url)
                .collect();
            if urls.len() == count {
                return urls;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Consul never listed {count} passing {service} instances: {urls:?}");
}

#[tokio::test]
async fn a_started_service_is_passing_and_is_gone_after_shutdown() {
    let consul = ConsulAgent::start().await;
    let vessels = vessel_service(
        fresh_postgres_database("disc_vessels").await,
        consul_args(&consul, "vessel-service"),
    )
    .await;
    let urls = wait_for_instances(&consul, "vessel-service", 1).await;
    assert_eq!(urls, [format!("http://{}", vessels.address)]);
    let catalog = format!(
        "http://{}/v1/catalog/service/vessel-service",
        consul.http_addr()
    );
    let entry = http_get(&catalog).await.unwrap();
    assert!(entry.contains("version=0.1.0"), "version tag: {entry}");
    assert!(entry.contains("vessel-service-"), "instance id: {entry}");

    vessels.stop().await;
    // Deregistered on shutdown: gone from the catalog, not merely failing its check.
    assert_eq!(http_get(&catalog).await.unwrap().trim(), "[]");
}

#[tokio::test]
async fn a_service_started_before_consul_registers_once_consul_is_up() {
    let mut consul = ConsulAgent::reserve();
    let vessels = vessel_service(
        fresh_postgres_database("disc_late").await,
        consul_args(&consul, "vessel-service"),
    )
    .await;
    // Serving already, without Consul.
    tokio::time::sleep(Duration::from_millis(300)).await;
    consul.restart().await;
    let urls = wait_for_instances(&consul, "vessel-service", 1).await;
    assert_eq!(urls, [format!("http://{}", vessels.address)]);
    vessels.stop().await;
}

/// user-service, two vessel-service instances and consignment-service, all
/// registered in `consul`; consignment-service finds its peers through it.
struct Cluster {
    vessels: Vec<Running>,
    user: Running,
    shipping: Running,
    token: String,
}

impl Cluster {
    async fn start(consul: &ConsulAgent, vessel_instances: usize) -> Self {
        init_test_logging();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut user_settings = settings::user(fresh_postgres_database("disc_users").await);
        user_settings.admin_emails = Vec::new();
        user_settings.serve.discovery = consul_args(consul, "user-service");
        let user = spawn::user(&user_settings).await.serving().await;

        let vessel_database = fresh_postgres_database("disc_fleet").await;
        let mut vessels = Vec::new();
        for _ in 0..vessel_instances {
            vessels.push(
                vessel_service(
                    vessel_database.clone(),
                    consul_args(consul, "vessel-service"),
                )
                .await,
            );
        }
        wait_for_instances(consul, "vessel-service", vessel_instances).await;
        wait_for_instances(consul, "user-service", 1).await;

        // Static addresses that lead nowhere: only Consul can find the peers.
        let mut consignment_settings = settings::consignment(
            fresh_postgres_database("disc_consignments").await,
            "http://127.0.0.1:9".into(),
            "http://127.0.0.1:9".into(),
        );
        consignment_settings.serve.discovery = consul_args(consul, "consignment-service");
        let shipping = spawn::consignment(&consignment_settings)
            .await
            .serving()
            .await;

        let email = format!("{unique}@example.com");
        create_user(user.channel(), "Disco", &email).await;
        let token = login(user.channel(), &email).await;
        Self {
            vessels,
            user,
            shipping,
            token,
        }
    }

    /// Creates a consignment; the vessel id on success.
    async fn ship(&self) -> Result<String, tonic::Status> {
        let consignment = Consignment {
            description: "Through Consul".into(),
            weight: 100,
            ..one_container_of(1)
        };
        let request = bearer(consignment, &self.token);
        ShippingServiceClient::new(self.shipping.channel())
            .create_consignment(request)
            .await
            .map(|answer| answer.into_inner().consignment.unwrap().vessel_id)
    }

    /// Ships until it works (keys and instances are found in the background).
    async fn ship_once_ready(&self) {
        for _ in 0..100 {
            if self.ship().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.ship()
            .await
            .expect("consignment-service found its peers through Consul");
    }

    async fn stop(self) {
        self.shipping.stop().await;
        for vessel in self.vessels {
            vessel.stop().await;
        }
        self.user.stop().await;
    }
}

#[tokio::test]
async fn with_two_vessel_instances_stopping_one_leaves_create_working() {
    let consul = ConsulAgent::start().await;
    let mut cluster = Cluster::start(&consul, 2).await;
    cluster.ship_once_ready().await;
    for _ in 0..4 {
        assert_eq!(cluster.ship().await.expect("shipped"), "vessel002");
    }

    cluster.vessels.remove(0).stop().await;
    // Straight away, before Consul noticed, and afterwards: every call works.
    for _ in 0..10 {
        cluster.ship().await.expect("the other instance serves");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_instances(&consul, "vessel-service", 1).await;
    cluster.ship().await.expect("still shipping");
    cluster.stop().await;
}

#[tokio::test]
async fn with_consul_stopped_calls_keep_reaching_known_instances() {
    let mut consul = ConsulAgent::start().await;
    let cluster = Cluster::start(&consul, 1).await;
    cluster.ship_once_ready().await;

    consul.stop();
    for _ in 0..10 {
        cluster.ship().await.expect("known instances still serve");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cluster.stop().await;
}

/// Issue 23, point 7: a fake vessel-service registered in the dev agent got
/// the real service token and users' bearer tokens. With ACLs on (default
/// deny, a token per service), registering the name `vessel-service` takes
/// vessel-service's own token: with none, or another service's, Consul
/// refuses (403), and discovery only ever finds the real instance.
#[tokio::test]
async fn with_acls_only_vessel_services_own_token_registers_that_name() {
    let consul = ConsulAgent::start_with_acls().await;
    let database = fresh_postgres_database("disc_acl").await;
    // The impostor: a working server (it would pass Consul's check) that
    // registers itself as vessel-service with email-service's token.
    let email_token = consul.token("email-service").unwrap();
    let log = std::env::temp_dir().join(format!(
        "shippy-impostor-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let impostor = ServiceProcess::start_logging_to(
        "vessel-service",
        &[
            ("DATABASE_URL", database.expose().to_owned()),
            ("CONSUL_HTTP_ADDR", consul.http_addr()),
            ("CONSUL_HTTP_TOKEN", email_token.expose().to_owned()),
        ],
        Some(&log),
    )
    .await;
    let fake = Registration {
        id: "vessel-service-impostor".into(),
        name: "vessel-service".into(),
        address: impostor.address.ip().to_string(),
        port: impostor.address.port(),
        tags: Vec::new(),
        meta: Default::default(),
        check: Check {
            grpc: Some(impostor.address.to_string()),
            http: None,
            grpc_use_tls: false,
            interval: "1s".into(),
            timeout: "1s".into(),
            deregister_critical_service_after: "1m".into(),
        },
    };
    for (who, token) in [
        ("no token", None),
        ("email-service's token", consul.token("email-service")),
    ] {
        let refused = ConsulClient::new(&consul.http_addr(), token.as_ref())
            .register(&fake)
            .await;
        assert!(
            matches!(refused, Err(ConsulError::Forbidden(_))),
            "with {who}: {refused:?}"
        );
    }

    let real = vessel_service(database, consul_args(&consul, "vessel-service")).await;
    let real_url = format!("http://{}", real.address);
    assert_eq!(
        wait_for_instances(&consul, "vessel-service", 1).await,
        [real_url.as_str()]
    );
    // The impostor keeps retrying; still only the real one, registered or passing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reader = ConsulClient::new(&consul.http_addr(), consul.token("api-gateway").as_ref());
    let registered = reader.registered("vessel-service").await.unwrap();
    let urls: Vec<&str> = registered.iter().map(|i| i.url.as_str()).collect();
    assert_eq!(urls, [real_url.as_str()]);
    // Nor can the impostor take the real one out.
    for token in [None, consul.token("email-service")] {
        let refused = ConsulClient::new(&consul.http_addr(), token.as_ref())
            .deregister(&registered[0].id)
            .await;
        assert!(
            matches!(refused, Err(ConsulError::Forbidden(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        reader.registered("vessel-service").await.unwrap(),
        registered
    );
    // The impostor was told why, once (its retries do not flood the log),
    // what to fix, and its token never appeared.
    let said = std::fs::read_to_string(&log).unwrap();
    let refusals: Vec<&str> = said.lines().filter(|line| line.contains("(403)")).collect();
    assert_eq!(refusals.len(), 1, "{said}");
    assert!(
        refusals[0].contains("CONSUL_HTTP_TOKEN") && refusals[0].contains("write"),
        "{said}"
    );
    assert!(!said.contains(email_token.expose()), "{said}");
    let _ = std::fs::remove_file(&log);
    impostor.stop().await;
    real.stop().await;
}

/// With ACLs on, each service's own token is enough to register it and to
/// find its peers: consignment-service reaches user- and vessel-service
/// through Consul.
#[tokio::test]
async fn with_acls_each_services_token_registers_it_and_finds_its_peers() {
    let consul = ConsulAgent::start_with_acls().await;
    let cluster = Cluster::start(&consul, 1).await;
    cluster.ship_once_ready().await;
    wait_for_instances(&consul, "consignment-service", 1).await;
    cluster.stop().await;
}

/// Issue 23, point 8: after a kill -9 and a restart on the same port, the
/// dead instance's registration stayed, and passed (the new one answers its
/// check): 3–4 duplicates. The id is stable per address now, so the new
/// instance replaces it.
#[tokio::test]
async fn an_instance_killed_and_restarted_on_its_address_replaces_its_registration() {
    let consul = ConsulAgent::start().await;
    let database = fresh_postgres_database("disc_restart").await;
    let log_dir = std::env::temp_dir().join(format!(
        "shippy-disc-restart-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&log_dir).unwrap();
    let env = |listen: String| {
        vec![
            ("LISTEN_ADDR", listen),
            ("DATABASE_URL", database.expose().to_owned()),
            ("CONSUL_HTTP_ADDR", consul.http_addr()),
            ("RUST_LOG", "warn,shippy_service::discovery=info".to_owned()),
        ]
    };
    let client = ConsulClient::new(&consul.http_addr(), None);
    let mut address = None;
    for round in 0..3 {
        let listen =
            address.map_or_else(|| "127.0.0.1:0".to_owned(), |a: SocketAddr| a.to_string());
        let log = log_dir.join(format!("vessel-service-{round}.log"));
        let process =
            ServiceProcess::start_logging_to("vessel-service", &env(listen), Some(&log)).await;
        address = Some(process.address);
        // Its own registration is in (the log says so once the agent took it).
        let mut registered = false;
        for _ in 0..100 {
            if std::fs::read_to_string(&log).is_ok_and(|text| text.contains("registered in Consul"))
            {
                registered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(registered, "round {round}: vessel-service never registered");
        let here = format!("http://{}", process.address);
        let instances = client.registered("vessel-service").await.unwrap();
        let at_address: Vec<_> = instances
            .iter()
            .filter(|instance| instance.url == here)
            .collect();
        assert_eq!(
            at_address.len(),
            1,
            "round {round}: one registration for {here}, not {instances:?}"
        );
        // kill -9: no deregistration.
        drop(process);
    }
    let _ = std::fs::remove_dir_all(&log_dir);
}
