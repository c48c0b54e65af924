//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no `protoc` is needed) and
//! generates prost types and tonic stubs. Server and transport code are generated only when the
//! matching crate features are on, which keeps them out of the wasm build.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "videostore/catalogue/v1/catalogue.proto",
    "videostore/stock/v1/stock.proto",
    "videostore/aggregator/v1/aggregator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let descriptors = protox::compile(PROTOS, [&root])?;
    std::fs::write(
        out_dir.join("videostore_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    let server = env::var_os("CARGO_FEATURE_SERVER").is_some();
    let transport = env::var_os("CARGO_FEATURE_TRANSPORT").is_some();
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .build_transport(transport)
        .codec_path("crate::codec::ProstCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
