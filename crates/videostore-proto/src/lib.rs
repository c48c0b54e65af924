//! The video store's contracts: prost messages and tonic stubs generated from `proto/`.
//!
//! # Layout
//! - [`catalogue`], [`stock`], [`aggregator`]: one module per protobuf package (`videostore.*.v1`),
//!   re-exported from the nested modules that mirror the package names.
//! - `client` (feature `transport`): the endpoint settings of every native client.
//! - [`codec`]: the protobuf codec of every generated client and server (decodes from a slice).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.
//!
//! Features: `server` adds the server traits, `transport` the native `connect` constructors. The
//! browser build enables neither.

/// Modules that mirror the protobuf package names, so that cross-package references resolve.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod videostore {
    /// `videostore.catalogue`.
    pub mod catalogue {
        /// `videostore.catalogue.v1`.
        pub mod v1 {
            tonic::include_proto!("videostore.catalogue.v1");
        }
    }
    /// `videostore.stock`.
    pub mod stock {
        /// `videostore.stock.v1`.
        pub mod v1 {
            tonic::include_proto!("videostore.stock.v1");
        }
    }
    /// `videostore.aggregator`.
    pub mod aggregator {
        /// `videostore.aggregator.v1`.
        pub mod v1 {
            tonic::include_proto!("videostore.aggregator.v1");
        }
    }
}

#[cfg(feature = "transport")]
pub mod client;
pub mod codec;

pub use videostore::aggregator::v1 as aggregator;
pub use videostore::catalogue::v1 as catalogue;
pub use videostore::stock::v1 as stock;

/// The largest HTTP/2 DATA frame a client accepts (SETTINGS_MAX_FRAME_SIZE), and a service too.
/// At the protocol's default, 16 KiB, the catalogue wrote a 500,000-film stream in about 7,300
/// write system calls; at 256 KiB a 500-film message (about 105 KB) is one frame and the same
/// stream takes about 1,700 (`cargo xtask bench`, bulk delivery, counted in `/proc/PID/io`).
/// Small enough that a frame of a bulk read holds up a short call sharing the connection for
/// a fraction of a millisecond on a local network.
pub const MAX_FRAME_SIZE: u32 = 256 << 10;

/// Encoded `FileDescriptorSet` of every package, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/videostore_descriptor.bin"));
