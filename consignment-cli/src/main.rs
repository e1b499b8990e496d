//! consignment-cli: create, list and cancel your shippy consignments.
//!
//! Every failure prints one line on stderr and exits non-zero.

use std::{path::PathBuf, process::ExitCode};

use backon::{ExponentialBuilder, Retryable};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use shippy_cli::{self as cli, Failure, listing::column_width, saved};
use shippy_proto::consignment::v1::{
    CancelRequest, Consignment, Container, GetRequest, Response,
    shipping_service_client::ShippingServiceClient,
};
use std::time::Duration;
use tonic::{Code, Status, metadata::MetadataValue};

/// The metadata a create's idempotency key travels in.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Retries of a create answered `UNAVAILABLE`: three more, from 200 ms.
const RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(Duration::from_secs(2))
    .with_max_times(3);

/// The original shippy's sample consignment, used when no file is given and
/// there is no `consignment.json` in the current directory.
const SAMPLE: &str = include_str!("../../consignment.json");

shippy_cli::cli_args! {
    /// Create, list and cancel your shippy consignments.
    service: "consignment-service",
    address_variable: "CONSIGNMENT_SERVICE_URL",
    default_address: "http://127.0.0.1:50051",
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ship a consignment described in a JSON file. Sent with an
    /// idempotency key (a fresh one each time, unless given), reused when
    /// consignment-service is unavailable and the create is retried, so a
    /// retry never books twice.
    Create {
        /// The file (default: ./consignment.json, else the original's sample).
        file: Option<PathBuf>,
        /// The idempotency key to send: give the key a failed `create`
        /// printed to retry it without booking twice (1 to 128 printable
        /// ASCII characters, no spaces).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List your consignments, newest first.
    List {
        /// Consignments per page.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
    },
    /// Cancel one of your consignments: its room goes back to its vessel.
    Cancel {
        /// The consignment's id (as `create` and `list` show it).
        id: String,
    },
}

/// A consignment file, as the original shippy's `consignment.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsignmentFile {
    description: String,
    weight: i32,
    containers: Vec<ContainerFile>,
    /// Accepted for compatibility; the service picks the vessel.
    #[serde(default)]
    #[allow(dead_code)]
    vessel_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerFile {
    #[serde(default)]
    id: String,
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    origin: String,
    /// Defaults to you.
    #[serde(default)]
    user_id: String,
}

#[derive(Debug, Serialize)]
struct ConsignmentOut {
    id: String,
    description: String,
    weight: i32,
    vessel_id: String,
    owner_id: String,
    created_at: Option<String>,
    containers: Vec<ContainerOut>,
}

#[derive(Debug, Serialize)]
struct ContainerOut {
    id: String,
    customer_id: String,
    origin: String,
    user_id: String,
}

impl From<Consignment> for ConsignmentOut {
    fn from(consignment: Consignment) -> Self {
        Self {
            id: consignment.id,
            description: consignment.description,
            weight: consignment.weight,
            vessel_id: consignment.vessel_id,
            owner_id: consignment.owner_id,
            created_at: cli::rfc3339(consignment.created_at),
            containers: consignment
                .containers
                .into_iter()
                .map(|container| ContainerOut {
                    id: container.id,
                    customer_id: container.customer_id,
                    origin: container.origin,
                    user_id: container.user_id,
                })
                .collect(),
        }
    }
}

/// A refused or failed call, as one line for the user.
fn failed(status: Status) -> Failure {
    Failure::from_status(&status, "consignment-service", "CONSIGNMENT_SERVICE_URL")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    cli::exit(run(Cli::parse()).await)
}

/// The consignment in a create or cancel answer.
fn answered(
    response: Result<tonic::Response<Response>, Status>,
) -> Result<ConsignmentOut, Failure> {
    response
        .map_err(failed)?
        .into_inner()
        .consignment
        .map(ConsignmentOut::from)
        .ok_or_else(|| Failure("consignment-service answered without the consignment".into()))
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let channel = cli::connect(&cli.addr)?;
    let mut client = ShippingServiceClient::new(channel);
    match cli.command {
        Command::Create {
            file,
            idempotency_key,
        } => {
            let consignment = read_consignment(file)?;
            let token = saved::resolve_token(cli.token).map_err(Failure)?;
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let key_value = MetadataValue::try_from(key.as_str()).map_err(|_| {
                Failure("--idempotency-key must be printable ASCII without spaces".into())
            })?;
            // One key for every attempt: a retry of a create that was placed
            // after all answers that consignment instead of booking again.
            let attempt = || {
                let mut client = client.clone();
                let request = saved::bearer(consignment.clone(), &token).map(|mut request| {
                    request
                        .metadata_mut()
                        .insert(IDEMPOTENCY_KEY, key_value.clone());
                    request
                });
                async move {
                    match request {
                        Ok(request) => client.create_consignment(request).await,
                        Err(message) => Err(Status::invalid_argument(message)),
                    }
                }
            };
            let answer = attempt
                .retry(RETRIES)
                .when(|status: &Status| status.code() == Code::Unavailable)
                .await;
            let stored = match answer {
                Err(status) if status.code() == Code::Unavailable => {
                    let Failure(line) = failed(status);
                    return Err(Failure(format!(
                        "{line} (it may have been placed: run `create --idempotency-key {key}` \
                         to retry without booking twice)"
                    )));
                }
                answer => answered(answer)?,
            };
            cli::print(cli.json, &stored, |stored| {
                println!(
                    "created consignment {} on vessel {} ({} containers, {} kg)",
                    stored.id,
                    stored.vessel_id,
                    stored.containers.len(),
                    stored.weight
                );
            })?;
        }
        Command::Cancel { id } => {
            let token = saved::resolve_token(cli.token).map_err(Failure)?;
            let request = saved::bearer(CancelRequest { id }, &token).map_err(Failure)?;
            let cancelled = answered(client.cancel_consignment(request).await)?;
            cli::print(cli.json, &cancelled, |cancelled| {
                println!(
                    "cancelled consignment {}; its room goes back to vessel {}",
                    cancelled.id, cancelled.vessel_id
                );
            })?;
        }
        Command::List { page_size } => {
            let token = saved::resolve_token(cli.token).map_err(Failure)?;
            let all = cli::listing::all_pages(async |page_token| {
                let request = saved::bearer(
                    GetRequest {
                        page_size,
                        page_token,
                    },
                    &token,
                )
                .map_err(Failure)?;
                let page = client
                    .get_consignments(request)
                    .await
                    .map_err(failed)?
                    .into_inner();
                let consignments = page.consignments.into_iter().map(ConsignmentOut::from);
                Ok((consignments.collect(), page.next_page_token))
            })
            .await?;
            cli::print(cli.json, all.as_slice(), print_table)?;
        }
    }
    Ok(())
}

fn read_consignment(file: Option<PathBuf>) -> Result<Consignment, Failure> {
    let (text, shown) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| Failure(format!("cannot read {}: {error}", path.display())))?;
            (text, path.display().to_string())
        }
        None => match std::fs::read_to_string("consignment.json") {
            Ok(text) => (text, "consignment.json".to_owned()),
            Err(_) => (
                SAMPLE.to_owned(),
                "the built-in sample consignment".to_owned(),
            ),
        },
    };
    let file: ConsignmentFile = serde_json::from_str(&text)
        .map_err(|error| Failure(format!("{shown} is not a valid consignment: {error}")))?;
    Ok(Consignment {
        description: file.description,
        weight: file.weight,
        containers: file
            .containers
            .into_iter()
            .map(|container| Container {
                id: container.id,
                customer_id: container.customer_id,
                origin: container.origin,
                user_id: container.user_id,
            })
            .collect(),
        ..Default::default()
    })
}

fn print_table(consignments: &[ConsignmentOut]) {
    if consignments.is_empty() {
        println!("no consignments");
        return;
    }
    let id = column_width("ID", consignments.iter().map(|c| c.id.as_str()));
    let vessel = column_width("VESSEL", consignments.iter().map(|c| c.vessel_id.as_str()));
    println!(
        "{:id$}  {:vessel$}  {:>9}  {:>10}  {:25}  DESCRIPTION",
        "ID", "VESSEL", "WEIGHT kg", "CONTAINERS", "CREATED"
    );
    for c in consignments {
        println!(
            "{:id$}  {:vessel$}  {:>9}  {:>10}  {:25}  {}",
            c.id,
            c.vessel_id,
            c.weight,
            c.containers.len(),
            c.created_at.as_deref().unwrap_or("-"),
            c.description
        );
    }
}
