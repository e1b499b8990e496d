//! `make dev`: the whole cluster on loopback, where everything is printed,
//! until Ctrl-C (or SIGTERM) stops it.

use super::up::{Cluster, up};
use super::{Session, Store, env_var};

pub(crate) async fn run(session: &mut Session, store: Store) -> anyhow::Result<()> {
    let cluster = up(session, store, &super::demo::options()).await?;
    println!("{}", where_things_are(&cluster, session));
    // Until the signal, which the session waits for.
    std::future::pending::<()>().await;
    Ok(())
}

/// The URLs and what to run in another shell.
fn where_things_are(cluster: &Cluster, session: &Session) -> String {
    let gateway = cluster.gateway_url();
    let metrics = |name| cluster.metrics_url(name);
    let consul = &cluster.consul;
    let run = session.run.display();
    let bin = cluster.bin.display();
    let admin = env_var("ADMIN_EMAILS").unwrap_or_else(|| "admin@example.com".into());
    let env = cluster.cli_env();
    let value = |name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default()
    };
    format!(
        "
The shippy-rs cluster is up (Ctrl-C stops it):
  user-service         127.0.0.1:{user}
  vessel-service       127.0.0.1:{vessel}
  consignment-service  127.0.0.1:{consignment}
  email-service        127.0.0.1:{email} (health only)
  web UI and JSON API  {gateway}/  (API under {gateway}/api/v1, {gateway}/api/openapi.json)
  metrics              {m_user} {m_vessel}
                       {m_consignment} {m_email}
                       {m_gateway}
  store                vessels and consignments in {store} (STORE=postgres|mongodb)
  Consul UI            http://{consul}/ui (ACLs on: log in with the token in
                       {run}/consul-management-token)
  SMTP server          smtp://127.0.0.1:{smtp}, mails in {maildir}/new
  admin account        sign up as {admin} to add vessels (ADMIN_EMAILS)
  logs                 {run}/*.log

In another shell:
  export USER_SERVICE_URL={users_url} CONSIGNMENT_SERVICE_URL={consignments_url} SHIPPY_CONFIG_DIR={config_dir}
  {bin}/user-cli create --name Ada --email ada@example.com --password 'correct horse'
  {bin}/user-cli login --email ada@example.com --password 'correct horse'
  {bin}/consignment-cli create && {bin}/consignment-cli list",
        user = cluster.port("user-service"),
        vessel = cluster.port("vessel-service"),
        consignment = cluster.port("consignment-service"),
        email = cluster.port("email-service"),
        m_user = metrics("user-service"),
        m_vessel = metrics("vessel-service"),
        m_consignment = metrics("consignment-service"),
        m_email = metrics("email-service"),
        m_gateway = metrics("api-gateway"),
        store = cluster.store.name(),
        smtp = cluster.smtp,
        maildir = cluster.maildir.display(),
        users_url = value("USER_SERVICE_URL"),
        consignments_url = value("CONSIGNMENT_SERVICE_URL"),
        config_dir = value("SHIPPY_CONFIG_DIR"),
    )
}
