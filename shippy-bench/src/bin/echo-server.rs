//! The benchmark's baseline: a bare tonic unary echo server (no database, no
//! auth, no layers), on `--listen-addr`.

use clap::Parser;
use shippy_proto::bench::v1::{
    EchoRequest, EchoResponse,
    echo_service_server::{EchoService, EchoServiceServer},
};
use tonic::{Request, Response, Status, transport::Server};

#[derive(Debug, Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:50060")]
    listen_addr: std::net::SocketAddr,
}

#[derive(Debug)]
struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shutdown = shippy_service::Shutdown::on_ctrl_c_or_sigterm();
    Server::builder()
        .add_service(EchoServiceServer::new(Echo))
        .serve_with_shutdown(args.listen_addr, shutdown.wait_owned())
        .await?;
    Ok(())
}
