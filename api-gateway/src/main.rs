//! api-gateway: `api-gateway --help` lists every setting.

shippy_service::service_main! {
    /// The shippy JSON API (under /api/v1) and web UI (at /), over the gRPC services.
    name: "api-gateway",
    application: api_gateway::app::Application,
    settings: api_gateway::settings::Settings,
    healthcheck: api_gateway::healthcheck::exit_if_asked,
}
