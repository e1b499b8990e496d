//! [`cli_args!`](crate::cli_args): the flags every command of a CLI takes.

/// The top-level arguments of a CLI that talks to one service: `--addr`
/// (where `service` listens, from `address_variable`, default
/// `default_address`), `--token` (default: the one `user-cli login` saved)
/// and `--json`, all global so they go before or after the command, and the
/// `command` (a `clap::Subcommand`). Defines `struct Cli` with the fields
/// `addr`, `token`, `json` and `command`; `--help` shows the doc comment
/// given (and the crate's description). The calling crate depends on `clap`.
///
/// ```ignore
/// shippy_cli::cli_args! {
///     /// Create shippy users, log in, list and look up users.
///     service: "user-service",
///     address_variable: "USER_SERVICE_URL",
///     default_address: "http://127.0.0.1:50053",
///     command: Command,
/// }
/// ```
#[macro_export]
macro_rules! cli_args {
    (
        $(#[$doc:meta])*
        service: $service:literal,
        address_variable: $variable:literal,
        default_address: $default:literal,
        command: $command:ty,
    ) => {
        $(#[$doc])*
        #[derive(Debug, ::clap::Parser)]
        #[command(version, about)]
        struct Cli {
            #[arg(
                long,
                global = true,
                env = $variable,
                default_value = $default,
                help = concat!("Where ", $service, " listens")
            )]
            addr: String,

            /// The token to send (default: the one `user-cli login` saved).
            #[arg(long, global = true, env = "SHIPPY_TOKEN", hide_env_values = true)]
            token: Option<String>,

            /// Print JSON instead of text.
            #[arg(long, global = true)]
            json: bool,

            #[command(subcommand)]
            command: $command,
        }
    };
}
