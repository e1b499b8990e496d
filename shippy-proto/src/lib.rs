//! The gRPC contracts of shippy-rs, generated from `proto/` at build time.
//!
//! One module per proto package (`shippy.vessel.v1` is [`vessel::v1`], and so
//! on), each with its messages, a `*_client` module and a `*_server` module.
//! [`FILE_DESCRIPTOR_SET`] is what every server hands to gRPC reflection.
//! Services never run code generation themselves.
//!
//! Only helpers that know nothing of a service's rules live here (e.g.
//! [`timestamp`]). Conversions between these messages and a service's domain
//! types live in that service's `domain.rs`, beside the rules they check
//! (parse, don't validate): the contract is shared, the rules are not.

/// `pub mod v1`, documented as `$doc`, holding the code generated from the
/// proto package `$package` (generated code is exempt from the workspace's
/// lints).
macro_rules! generated_v1 {
    ($package:literal, $doc:literal) => {
        #[doc = $doc]
        pub mod v1 {
            #![allow(missing_docs, clippy::all, missing_debug_implementations)]
            tonic::include_proto!($package);
        }
    };
}

/// Consignments: `shippy.consignment.v1`.
pub mod consignment {
    generated_v1!(
        "shippy.consignment.v1",
        "Version 1 of the consignment contract."
    );
}

/// The vessel fleet: `shippy.vessel.v1`.
pub mod vessel {
    generated_v1!("shippy.vessel.v1", "Version 1 of the vessel contract.");

    /// The metadata of `Reserve`'s `RESOURCE_EXHAUSTED` answer when the
    /// per-account cap refuses it: what the account holds (held and
    /// confirmed) and the cap, each a decimal number.
    pub mod quota {
        /// Containers the account holds.
        pub const HELD_CONTAINERS: &str = "x-quota-held-containers";
        /// Kilograms the account holds.
        pub const HELD_WEIGHT: &str = "x-quota-held-weight";
        /// The most containers one account may hold.
        pub const MAX_CONTAINERS: &str = "x-quota-max-containers";
        /// The most kilograms one account may hold.
        pub const MAX_WEIGHT: &str = "x-quota-max-weight";
    }
}

/// Users, tokens and token keys: `shippy.user.v1`.
pub mod user {
    generated_v1!("shippy.user.v1", "Version 1 of the user contract.");
}

/// Events carried on NATS JetStream: `shippy.events.v1`.
pub mod events {
    generated_v1!("shippy.events.v1", "Version 1 of the event messages.");

    /// The NATS subject `user.created` events are published on.
    pub const USER_CREATED_SUBJECT: &str = "user.created";
}

/// The benchmark's baseline echo: `shippy.bench.v1`.
pub mod bench {
    generated_v1!("shippy.bench.v1", "Version 1 of the echo contract.");
}

/// The encoded `FileDescriptorSet` of every shippy proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shippy_descriptor");

/// Protobuf's `google.protobuf.Timestamp`, as the generated code uses it.
pub use prost_types::Timestamp;

/// Converts a `chrono` time into a protobuf `Timestamp`.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos().try_into().unwrap_or(i32::MAX),
    }
}
