//! Events produced by applying commands, named and formatted like Redis Sentinel's
//! Pub/Sub events, so the Sentinel port can publish them unchanged and operators can grep logs.

use serde::Serialize;

use crate::model::{Addr, Epoch, NodeId};

/// One event: a Sentinel channel name and its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Channel name, e.g. `+switch-master`.
    pub kind: String,
    /// Payload in Sentinel's format.
    pub payload: String,
    /// Master the event belongs to, if any.
    pub master: Option<String>,
    /// Node whose own view the event describes (`+sdown`/`-sdown`); None for cluster-wide events.
    pub node: Option<NodeId>,
    /// For `+switch-master`: the failover's epoch and the node that ran it (the
    /// `client-reconfig-script`'s `leader`/`observer` role and its once-per-switch record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch: Option<(Epoch, NodeId)>,
}

impl Event {
    pub(crate) fn new(kind: impl Into<String>, payload: String, master: Option<&str>) -> Event {
        Event {
            kind: kind.into(),
            payload,
            master: master.map(str::to_string),
            node: None,
            switch: None,
        }
    }

    pub(crate) fn of_switch(mut self, epoch: Epoch, leader: NodeId) -> Event {
        self.switch = Some((epoch, leader));
        self
    }

    pub(crate) fn of_node(mut self, node: NodeId) -> Event {
        self.node = Some(node);
        self
    }
}

/// `master <name> <ip> <port>`
pub fn master_details(name: &str, addr: &Addr) -> String {
    format!("master {name} {} {}", addr.host, addr.port)
}

/// `slave <ip>:<port> <ip> <port> @ <master-name> <master-ip> <master-port>`
pub fn replica_details(replica: &Addr, master: &str, master_addr: &Addr) -> String {
    format!(
        "slave {replica} {} {} @ {master} {} {}",
        replica.host, replica.port, master_addr.host, master_addr.port
    )
}
