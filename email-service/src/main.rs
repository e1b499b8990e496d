//! email-service: `email-service --help` lists every setting.

shippy_service::service_main! {
    /// Sends the shippy welcome mail for every `user.created` event.
    name: "email-service",
    application: email_service::app::Application,
    settings: email_service::settings::Settings,
}
