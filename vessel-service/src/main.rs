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
    let args = Args::parse();
    telemetry::init(&args.telemetry).context("cannot start logging")?;
    let app = Application::build(&args.settings)
        .await
        .context("vessel-service cannot start")?;
    tracing::info!(address = %app.local_addr()?, "vessel-service started");
    app.run(Shutdown::on_ctrl_c_or_sigterm())
        .await
        .context("vessel-service stopped with an error")?;
    tracing::info!("vessel-service stopped");
    Ok(())
}
