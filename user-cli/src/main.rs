//! user-cli: create shippy users, log in, list and look up users.
//!
//! Every failure prints one line on stderr and exits non-zero.

use std::{
    io::{BufRead, IsTerminal},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use serde::Serialize;
use shippy_cli::{self as cli, Failure, listing::column_width, saved};
use shippy_proto::user::v1::{
    Request as ListRequest, Response, User, UserProfile, user_service_client::UserServiceClient,
};
use tonic::{Request, Status};

shippy_cli::cli_args! {
    /// Create shippy users, log in, list and look up users.
    service: "user-service",
    address_variable: "USER_SERVICE_URL",
    default_address: "http://127.0.0.1:50053",
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account.
    Create {
        /// Your name.
        #[arg(long)]
        name: String,
        /// Your email address; you log in with it.
        #[arg(long)]
        email: String,
        /// Your company.
        #[arg(long, default_value = "")]
        company: String,
        /// At least 8 characters; asked for (without echo) when omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// Log in: prints the token and saves it for the other commands and consignment-cli.
    Login {
        /// Your email address.
        #[arg(long)]
        email: String,
        /// Asked for (without echo) when omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// List users (needs a login).
    List {
        /// Users per page.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
    },
    /// Show one user by id (needs a login).
    Get {
        /// The user's id.
        id: String,
    },
}

/// A refused or failed call, as one line for the user.
fn failed(status: Status) -> Failure {
    Failure::from_status(&status, "user-service", "USER_SERVICE_URL")
}

/// The user a `Create` or `Get` call answered.
fn one_user(answer: Result<tonic::Response<Response>, Status>) -> Result<Profile, Failure> {
    let user = answer.map_err(failed)?.into_inner().user;
    user.map(Profile::from)
        .ok_or_else(|| Failure("user-service answered without the user".into()))
}

#[derive(Serialize)]
struct Profile {
    id: String,
    name: String,
    company: String,
    email: String,
    created_at: Option<String>,
}

impl From<UserProfile> for Profile {
    fn from(user: UserProfile) -> Self {
        Self {
            id: user.id,
            name: user.name,
            company: user.company,
            email: user.email,
            created_at: cli::rfc3339(user.created_at),
        }
    }
}

#[derive(Serialize)]
struct LoginOutput {
    token: String,
    user_id: String,
    expires_at: Option<String>,
    saved_to: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    cli::exit(run(Cli::parse()).await)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let channel = cli::connect(&cli.addr)?;
    let mut client = UserServiceClient::new(channel.clone());
    match cli.command {
        Command::Create {
            name,
            email,
            company,
            password,
        } => {
            let password = match password {
                Some(password) => password,
                None => read_password("Password (at least 8 characters): ")?,
            };
            let profile = one_user(
                client
                    .create(User {
                        name,
                        email,
                        company,
                        password,
                        ..Default::default()
                    })
                    .await,
            )?;
            cli::print(cli.json, &profile, |profile| {
                println!(
                    "created user {} <{}> with id {}",
                    profile.name, profile.email, profile.id
                );
            })?;
        }
        Command::Login { email, password } => {
            let password = match password {
                Some(password) => password,
                None => read_password("Password: ")?,
            };
            let answer = client
                .auth(User {
                    email,
                    password,
                    ..Default::default()
                })
                .await
                .map_err(failed)?
                .into_inner();
            let path = saved::token_path().map_err(|error| Failure(error.to_string()))?;
            saved::save_token(&path, &answer.token).map_err(|error| {
                Failure(format!(
                    "cannot save the token to {}: {error}",
                    path.display()
                ))
            })?;
            let output = LoginOutput {
                token: answer.token,
                user_id: answer.user_id,
                expires_at: cli::rfc3339(answer.expires_at),
                saved_to: path.display().to_string(),
            };
            cli::print(cli.json, &output, |output| {
                println!("{}", output.token);
                eprintln!("logged in; token saved to {}", output.saved_to);
            })?;
        }
        Command::List { page_size } => {
            let token = token(cli.token)?;
            let users = cli::listing::all_pages(async |page_token| {
                let request = authorized(
                    ListRequest {
                        page_size,
                        page_token,
                    },
                    &token,
                )?;
                let page = client.get_all(request).await.map_err(failed)?.into_inner();
                let users = page.users.into_iter().map(Profile::from);
                Ok((users.collect(), page.next_page_token))
            })
            .await?;
            cli::print(cli.json, users.as_slice(), print_table)?;
        }
        Command::Get { id } => {
            let token = token(cli.token)?;
            let profile = one_user(
                client
                    .get(authorized(
                        User {
                            id,
                            ..Default::default()
                        },
                        &token,
                    )?)
                    .await,
            )?;
            cli::print(cli.json, &profile, |profile| {
                print_table(std::slice::from_ref(profile));
            })?;
        }
    }
    Ok(())
}

fn token(given: Option<String>) -> Result<String, Failure> {
    saved::resolve_token(given).map_err(Failure)
}

fn authorized<T>(message: T, token: &str) -> Result<Request<T>, Failure> {
    saved::bearer(message, token).map_err(Failure)
}

/// Asks on the terminal without echo; reads one line from stdin when it is not a terminal.
fn read_password(prompt: &str) -> Result<String, Failure> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|error| Failure(format!("cannot read the password: {error}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| Failure(format!("cannot read the password: {error}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err(Failure("no password given".into()));
    }
    Ok(password)
}

fn print_table(users: &[Profile]) {
    if users.is_empty() {
        println!("no users");
        return;
    }
    let width = |title, pick: fn(&Profile) -> &str| column_width(title, users.iter().map(pick));
    let (id, name, email) = (
        width("ID", |user| &user.id),
        width("NAME", |user| &user.name),
        width("EMAIL", |user| &user.email),
    );
    println!(
        "{:id$}  {:name$}  {:email$}  COMPANY",
        "ID", "NAME", "EMAIL"
    );
    for user in users {
        println!(
            "{:id$}  {:name$}  {:email$}  {}",
            user.id, user.name, user.email, user.company
        );
    }
}
