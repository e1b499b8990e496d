//! consignment-service: `consignment-service --help` lists every setting.

use anyhow::Context;
use clap::Parser;
use consignment_service::{app::Application, settings::Settings};
use shippy_service::{Shutdown, settings::TelemetryArgs, telemetry};

/// shippy consignments over gRPC (`shippy.consignment.v1.ShippingService`).
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
    let telemetry = telemetry::init(&args.telemetry, "consignment-service")
        .context("cannot start logging and tracing")?;
    let app = Application::build(&args.settings)
        .await
        .context("consignment-service cannot start")?;
    tracing::info!(address = %app.local_addr()?, "consignment-service started");
    let stopped = app.run(Shutdown::on_ctrl_c_or_sigterm()).await;
    tracing::info!("consignment-service stopped");
    telemetry.shutdown().await;
    stopped.context("consignment-service stopped with an error")
}
