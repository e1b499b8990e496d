//! vessel-service: `vessel-service --help` lists every setting.

shippy_service::service_main! {
    /// The shippy vessel fleet over gRPC (`shippy.vessel.v1.VesselService`).
    name: "vessel-service",
    application: vessel_service::app::Application,
    settings: vessel_service::settings::Settings,
}
