//! Talking to one Redis instance: the connection ([`link`]), reply parsers ([`info`]) and the
//! ACL check ([`acl`]). Below `monitor` and `failover`, which both use it; imports neither.

pub mod acl;
pub mod info;
pub mod link;
