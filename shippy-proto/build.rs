//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the tonic clients and servers, plus the encoded descriptor set that server
//! reflection serves.

use std::{env, fs, io, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "shippy/consignment/v1/consignment.proto",
    "shippy/vessel/v1/vessel.proto",
    "shippy/user/v1/user.proto",
    "shippy/events/v1/events.proto",
    "shippy/bench/v1/echo.proto",
];

fn main() -> io::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(io::Error::other)?);
    let proto_root = manifest_dir.join("..").join("proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for proto in PROTOS {
        println!(
            "cargo:rerun-if-changed={}",
            proto_root.join(proto).display()
        );
    }

    let descriptors = protox::compile(PROTOS, [&proto_root]).map_err(io::Error::other)?;
    fs::write(
        out_dir.join("shippy_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
}
