//! Monitoring of Redis instances: probing, parsing INFO/ROLE, subjective down.

mod view;

pub use view::{InstanceInfo, MonitorView, ReportedRole};
