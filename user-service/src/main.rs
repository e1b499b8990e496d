//! user-service: `user-service --help` lists every setting.

shippy_service::service_main! {
    /// shippy accounts and session tokens over gRPC (`shippy.user.v1.UserService`).
    name: "user-service",
    application: user_service::app::Application,
    settings: user_service::settings::Settings,
}
