//! user-service: `user-service --help` lists every setting.

use anyhow::Context;
use clap::Parser;
use shippy_service::{Shutdown, settings::TelemetryArgs, telemetry};
use user_service::{app::Application, settings::Settings};

/// shippy accounts and session tokens over gRPC (`shippy.user.v1.UserService`).
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
    let telemetry = telemetry::init(&args.telemetry, "user-service")
        .context("cannot start logging and tracing")?;
    let app = Application::build(&args.settings)
        .await
        .context("user-service cannot start")?;
    tracing::info!(address = %app.local_addr()?, "user-service started");
    let stopped = app.run(Shutdown::on_ctrl_c_or_sigterm()).await;
    tracing::info!("user-service stopped");
    telemetry.shutdown().await;
    stopped.context("user-service stopped with an error")
}
