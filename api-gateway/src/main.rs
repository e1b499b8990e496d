//! api-gateway: `api-gateway --help` lists every setting.

use anyhow::Context;
use api_gateway::{app::Application, settings::Settings};
use clap::Parser;
use shippy_service::{Shutdown, settings::TelemetryArgs, telemetry};

/// The shippy JSON API (under /api/v1) and web UI (at /), over the gRPC services.
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
    api_gateway::healthcheck::exit_if_asked().await;
    let args = Args::parse();
    let telemetry = telemetry::init(&args.telemetry, "api-gateway")
        .context("cannot start logging and tracing")?;
    let app = Application::build(&args.settings)
        .await
        .context("api-gateway cannot start")?;
    tracing::info!(address = %app.local_addr()?, "api-gateway started: the web UI is at /");
    let stopped = app.run(Shutdown::on_ctrl_c_or_sigterm()).await;
    tracing::info!("api-gateway stopped");
    telemetry.shutdown().await;
    stopped.context("api-gateway stopped with an error")
}
