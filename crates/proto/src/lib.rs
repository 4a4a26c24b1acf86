//! Generated code for the Quis protobuf contracts in `proto/`.
//!
//! One module per package, `quis::<service>::v1`; [`FILE_DESCRIPTOR_SET`] holds
//! every file, for server reflection.
#![forbid(unsafe_code)]
#![allow(clippy::doc_markdown, clippy::large_enum_variant, missing_docs)]

/// Encoded `google.protobuf.FileDescriptorSet` of every Quis proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/quis_descriptor.bin"));

pub mod quis {
    pub mod echo {
        pub mod v1 {
            tonic::include_proto!("quis.echo.v1");
        }
    }
    pub mod identity {
        pub mod v1 {
            tonic::include_proto!("quis.identity.v1");
        }
    }
}

pub use quis::{echo::v1 as echo, identity::v1 as identity};

/// The gRPC service names of every Quis API, as routed by the gateway.
pub const SERVICE_NAMES: &[&str] = &["quis.echo.v1.EchoService", "quis.identity.v1.IdentityService"];
