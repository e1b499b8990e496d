//! user-service: `user-service --help` lists every setting;
//! `user-service keys --help` manages the signing keys.

shippy_service::service_main! {
    /// shippy accounts and session tokens over gRPC (`shippy.user.v1.UserService`).
    name: "user-service",
    application: user_service::app::Application,
    settings: user_service::settings::Settings,
    healthcheck: user_service::keys::admin::exit_if_asked,
}
