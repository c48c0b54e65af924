//! The video store's contracts: prost messages and tonic stubs generated from `proto/`.
//!
//! # Layout
//! - [`catalogue`], [`stock`], [`aggregator`]: one module per protobuf package (`videostore.*.v1`),
//!   re-exported from the nested modules that mirror the package names.
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

pub mod codec;

pub use videostore::aggregator::v1 as aggregator;
pub use videostore::catalogue::v1 as catalogue;
pub use videostore::stock::v1 as stock;

/// Encoded `FileDescriptorSet` of every package, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/videostore_descriptor.bin"));
