//! Composition root: builds a node from its [`Config`], spawns every task with a span, and
//! shuts them down in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{error, info, info_span, Instrument};

use crate::api::grpc::CoordinatorService;
use crate::config::Config;
use crate::consensus::{DiskStore, NodeConfig, RaftHandle, RaftNode, StartError, StoreError};
use crate::fsm::MemberInfo;
use crate::net::{PeerNetwork, PeerService, MAX_PEER_MESSAGE};
use crate::pb;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// How long tasks get to drain after shutdown is triggered.
const GRACE: Duration = Duration::from_secs(5);

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data dir is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raft refused to start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A port could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which port.
        what: &'static str,
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running node.
pub struct Node {
    /// Handle to its Raft task.
    pub raft: RaftHandle,
    /// This node's local view of every Redis instance (written by the monitor).
    pub monitor_view: tokio::sync::watch::Receiver<Arc<crate::monitor::MonitorView>>,
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Opens storage, binds every port and starts every task.
    pub async fn start(cfg: Config) -> Result<Node, AppError> {
        let cfg = Arc::new(cfg);
        let (trigger, shutdown) = shutdown::channel();
        let (store, recovered) = DiskStore::open(&cfg.data_dir, cfg.node_id, &cfg.raft.cluster_id)?;
        info!(
            node_id = cfg.node_id,
            applied = recovered.applied,
            fresh = recovered.fresh,
            "opened data dir"
        );
        let run_id = recovered.run_id.clone();

        // Bind first, so a port conflict fails before the node joins the cluster.
        let peer_l = bind("peer", cfg.listen.peer).await?;
        let grpc_l = bind("grpc", cfg.listen.grpc).await?;
        let sentinel_l = bind("sentinel", cfg.listen.sentinel).await?;
        let advertise =
            |l: &TcpListener, fallback| cfg.advertised(l.local_addr().unwrap_or(fallback));
        let self_info = MemberInfo {
            peer_addr: cfg.peers.get(&cfg.node_id).cloned(),
            sentinel_addr: Some(advertise(&sentinel_l, cfg.listen.sentinel)),
            grpc_addr: Some(advertise(&grpc_l, cfg.listen.grpc)),
            run_id: Some(run_id.clone()),
        };

        let node_cfg = NodeConfig {
            id: cfg.node_id,
            tick: cfg.raft.tick,
            election_ticks: cfg.raft.election_ticks,
            heartbeat_ticks: cfg.raft.heartbeat_ticks,
            compact_threshold: cfg.raft.compact_threshold,
            bootstrap_masters: cfg.masters.clone(),
            self_info,
            configured_peers: cfg.peers.clone(),
        };
        let bootstrap: Vec<u64> = if cfg.raft.join {
            Vec::new()
        } else {
            cfg.peers.keys().copied().collect()
        };
        let mailbox = RaftNode::mailbox();
        let transport =
            PeerNetwork::new(cfg.node_id, cfg.raft.cluster_id.clone(), mailbox.0.clone());
        let (raft, node_task) = RaftNode::start(
            node_cfg,
            store,
            recovered,
            &bootstrap,
            mailbox,
            Box::new(transport),
            shutdown.clone(),
        )?;
        let mut tasks = vec![node_task];

        let peer_svc = pb::peer::raft_peer_server::RaftPeerServer::new(PeerService::new(
            raft.clone(),
            cfg.raft.cluster_id.clone(),
            cfg.peers.clone(),
        ))
        .max_decoding_message_size(MAX_PEER_MESSAGE);
        tasks.push(serve_grpc("peer", peer_l, shutdown.clone(), move |b| {
            b.add_service(peer_svc)
        }));

        let api = pb::api::coordinator_server::CoordinatorServer::new(CoordinatorService::new(
            raft.clone(),
        ));
        tasks.push(serve_grpc("grpc", grpc_l, shutdown.clone(), move |b| {
            b.add_service(api)
        }));

        // Monitoring runs on every node; the failover executor acts only on the leader.
        let (monitor_view, monitor_task) = crate::monitor::spawn(raft.clone(), shutdown.clone());
        tasks.push(monitor_task);
        tasks.push(crate::failover::spawn(
            raft.clone(),
            monitor_view.clone(),
            shutdown.clone(),
        ));

        // The Sentinel port is served once the RESP server lands; until then the listener
        // is held so the port is reserved and reported.
        let _sentinel_l = sentinel_l;

        Ok(Node {
            raft,
            monitor_view,
            trigger,
            tasks,
        })
    }

    /// Stops every task and waits for them (bounded by a grace period).
    pub async fn stop(self) {
        self.trigger.trigger();
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(GRACE, all).await.is_err() {
            error!("tasks did not stop within {GRACE:?}");
        }
    }
}

async fn bind(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, AppError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })?;
    info!(port = what, addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
    Ok(l)
}

fn serve_grpc(
    what: &'static str,
    listener: TcpListener,
    mut shutdown: Shutdown,
    add: impl FnOnce(&mut tonic::transport::Server) -> tonic::transport::server::Router,
) -> tokio::task::JoinHandle<()> {
    let mut server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .concurrency_limit_per_connection(256);
    let router = add(&mut server);
    tokio::spawn(
        async move {
            let incoming = TcpListenerStream::new(listener);
            let res = router
                .serve_with_incoming_shutdown(incoming, async move { shutdown.recv().await })
                .await;
            if let Err(e) = res {
                error!(error = %e, "gRPC server failed");
            }
        }
        .instrument(info_span!("grpc", port = what)),
    )
}

/// Runs a node until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let node = Node::start(cfg).await?;
    shutdown::signal().await;
    info!("shutting down");
    node.stop().await;
    Ok(())
}
