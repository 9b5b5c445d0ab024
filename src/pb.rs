//! Generated protobuf and gRPC code. Used only by `net`, `api` and the `ctl` client.

#![allow(missing_docs, clippy::all)]

/// The Raft peer transport.
pub mod peer {
    tonic::include_proto!("raftsentinel.peer.v1");
}

/// The public API.
pub mod api {
    tonic::include_proto!("raftsentinel.v1");
}

/// Encoded file descriptor set of the public API only (served by reflection on the API port;
/// the peer protocol is deliberately absent).
pub const API_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("api_descriptor");

/// How fields of the printed replies serialize where the derived form would differ from what
/// `ctl --json` has always printed (named through `field_attribute` in build.rs).
pub(crate) mod json {
    use serde::Serializer;

    /// A Raft role by its lowercased name (`leader`, `pre_candidate`, ...).
    pub(crate) fn role<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = super::api::Role::try_from(*v).unwrap_or_default();
        s.serialize_str(&name.as_str_name().to_ascii_lowercase())
    }

    /// A change kind by its lowercased name (`switch`, `current`).
    pub(crate) fn change_kind<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        let name = super::api::master_change::Kind::try_from(*v).unwrap_or_default();
        s.serialize_str(&name.as_str_name().to_ascii_lowercase())
    }

    /// An absent message as its default, so readers always find the object.
    pub(crate) fn or_default<T, S>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
    where
        T: serde::Serialize + Default,
        S: Serializer,
    {
        match v {
            Some(v) => v.serialize(s),
            None => T::default().serialize(s),
        }
    }
}
