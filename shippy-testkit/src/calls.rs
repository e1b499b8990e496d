//! Calls an attacker makes: from an address of the test's choosing, and
//! requests that open and never send their message (holding whatever a
//! server gives a request before its message arrives).

use std::net::{IpAddr, SocketAddr};

use hyper_util::rt::TokioIo;
use tokio::{net::TcpSocket, task::JoinHandle};
use tonic::{
    Code,
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint, Uri},
};

/// A channel to `server` whose connections come from `source` (any
/// 127.0.0.0/8 address works on loopback), so a server sees another client.
pub async fn channel_from(server: SocketAddr, source: IpAddr) -> Channel {
    Endpoint::from_shared(format!("http://{server}"))
        .expect("an endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| async move {
            let socket = if source.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(server).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }))
        .await
        .expect("connect")
}

/// Opens `count` calls of the unary method at `path` (`/package.Service/Method`)
/// on `channel` that send their headers and never their message. Each task
/// ends with the code the server answered.
pub fn hold_bodyless_calls(
    channel: &Channel,
    path: &'static str,
    count: usize,
) -> Vec<JoinHandle<Code>> {
    (0..count)
        .map(|_| {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            tokio::spawn(async move {
                if let Err(error) = grpc.ready().await {
                    return tonic::Status::from_error(error.into()).code();
                }
                let never = tokio_stream::pending::<()>();
                let answer = grpc
                    .client_streaming::<_, (), (), _>(
                        tonic::Request::new(never),
                        PathAndQuery::from_static(path),
                        tonic_prost::ProstCodec::default(),
                    )
                    .await;
                match answer {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                }
            })
        })
        .collect()
}
