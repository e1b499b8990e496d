//! vessel-service: `vessel-service --help` lists every setting.

use anyhow::Context;
use clap::Parser;
use shippy_service::{Shutdown, settings::TelemetryArgs, telemetry};
use vessel_service::{app::Application, settings::Settings};

/// The shippy vessel fleet over gRPC (`shippy.vessel.v1.VesselService`).
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
    let telemetry = telemetry::init(&args.telemetry, "vessel-service")
        .context("cannot start logging and tracing")?;
    let app = Application::build(&args.settings)
        .await
        .context("vessel-service cannot start")?;
    tracing::info!(address = %app.local_addr()?, "vessel-service started");
    let stopped = app.run(Shutdown::on_ctrl_c_or_sigterm()).await;
    tracing::info!("vessel-service stopped");
    telemetry.shutdown().await;
    stopped.context("vessel-service stopped with an error")
}
