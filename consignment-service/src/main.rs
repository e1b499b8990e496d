//! consignment-service: `consignment-service --help` lists every setting.

shippy_service::service_main! {
    /// shippy consignments over gRPC (`shippy.consignment.v1.ShippingService`).
    name: "consignment-service",
    application: consignment_service::app::Application,
    settings: consignment_service::settings::Settings,
}
