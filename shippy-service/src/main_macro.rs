//! [`service_main!`](crate::service_main): the one `main` of every service
//! binary.

/// The whole `main` of a service binary: flags and environment parsed with
/// `--help` from the given doc comment (the service's settings and the
/// telemetry ones), [`Allocator`](crate::Allocator) as the global
/// allocator, `SERVICE healthcheck` answered, logging and tracing
/// started, the application built and run until SIGINT or SIGTERM, the
/// traces flushed. Every service binary is one call:
///
/// ```ignore
/// shippy_service::service_main! {
///     /// The shippy vessel fleet over gRPC (`shippy.vessel.v1.VesselService`).
///     name: "vessel-service",
///     application: vessel_service::app::Application,
///     settings: vessel_service::settings::Settings,
/// }
/// ```
///
/// `application` needs `build(&settings)`, `local_addr()`, `metrics_addr()`
/// and `run(self, Shutdown)`; `healthcheck:` names another probe than the gRPC
/// one (the api-gateway's is HTTP). The calling crate depends on `anyhow`,
/// `clap`, `tokio` and `tracing`.
#[macro_export]
macro_rules! service_main {
    (
        $(#[$doc:meta])*
        name: $name:literal,
        application: $application:path,
        settings: $settings:path,
        $(healthcheck: $healthcheck:path,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, ::clap::Parser)]
        #[command(version, about)]
        struct Args {
            #[command(flatten)]
            settings: $settings,
            #[command(flatten)]
            telemetry: $crate::settings::TelemetryArgs,
        }

        #[global_allocator]
        static ALLOCATOR: $crate::Allocator = $crate::Allocator;

        #[::tokio::main]
        async fn main() -> ::anyhow::Result<()> {
            use ::anyhow::Context as _;
            use ::clap::Parser as _;
            $crate::service_main!(@healthcheck $($healthcheck)?);
            let args = Args::parse();
            let telemetry = $crate::telemetry::init(&args.telemetry, $name)
                .context("cannot start logging and tracing")?;
            let app = <$application>::build(&args.settings)
                .await
                .context(concat!($name, " cannot start"))?;
            // Tests find the address in this line (shippy_testkit::ServiceProcess).
            ::tracing::info!(
                target: "shippy::started",
                address = %app.local_addr()?,
                metrics = %app.metrics_addr()?,
                concat!($name, " started"),
            );
            let stopped = app.run($crate::Shutdown::on_ctrl_c_or_sigterm()).await;
            ::tracing::info!(concat!($name, " stopped"));
            telemetry.shutdown().await;
            stopped.context(concat!($name, " stopped with an error"))
        }
    };
    (@healthcheck) => {
        $crate::healthcheck::exit_if_asked().await
    };
    (@healthcheck $healthcheck:path) => {
        $healthcheck().await
    };
}
