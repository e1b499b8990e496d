//! email-service: `email-service --help` lists every setting.

use anyhow::Context;
use clap::Parser;
use email_service::{app::Application, settings::Settings};
use shippy_service::{Shutdown, settings::TelemetryArgs, telemetry};

/// Sends the shippy welcome mail for every `user.created` event.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shippy_service::healthcheck::exit_if_asked().await;
    let args = Args::parse();
    let telemetry = telemetry::init(&args.telemetry, "email-service")
        .context("cannot start logging and tracing")?;
    let app = Application::build(&args.settings)
        .await
        .context("email-service cannot start")?;
    tracing::info!(address = %app.local_addr()?, "email-service started");
    let stopped = app.run(Shutdown::on_ctrl_c_or_sigterm()).await;
    tracing::info!("email-service stopped");
    telemetry.shutdown().await;
    stopped.context("email-service stopped with an error")
}
