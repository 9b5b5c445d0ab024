//! Composition root: builds a node from its [`Config`], spawns every task with a span, and
//! shuts them down in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tracing::{error, info, info_span, warn, Instrument};

use crate::api::grpc::CoordinatorService;
use crate::api::grpc_port::{Counted, CountedStream, GrpcPortStats};
use crate::config::Config;
use crate::config::InitialClusterState;
use crate::consensus::{Boot, DiskStore, NodeConfig, RaftHandle, RaftNode, StartError, StoreError};
use crate::fsm::MemberInfo;
use crate::net::{ClusterKey, PeerNetwork, PeerService, MAX_PEER_MESSAGE};
use crate::pb;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// How long tasks get to drain after shutdown is triggered.
const GRACE: Duration = Duration::from_secs(5);

/// Descriptors of the services on the API port: reflection describes them, the port's
/// metrics count calls per method of them.
const API_DESCRIPTORS: [&[u8]; 4] = [
    pb::API_FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data dir is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raft refused to start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// TLS files or settings are unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// The runtime of the monitor, the failover executor or the Sentinel port could not be
    /// started.
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
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
    pub monitor_view: tokio::sync::watch::Receiver<Arc<crate::view::MonitorView>>,
    trigger: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The runtime of the monitor (see [`Node::start`]).
    probe_rt: Option<tokio::runtime::Runtime>,
    /// The runtime of the Sentinel port's connections (see [`Node::start`]).
    port_rt: Option<tokio::runtime::Runtime>,
    /// The runtime of the failover executor (see [`Node::start`]).
    failover_rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Node {
    fn drop(&mut self) {
        // A runtime may not be dropped (which blocks) inside another runtime.
        for rt in [
            self.probe_rt.take(),
            self.failover_rt.take(),
            self.port_rt.take(),
        ]
        .into_iter()
        .flatten()
        {
            rt.shutdown_background();
        }
    }
}

impl Node {
    /// Opens storage, binds every port and starts every task.
    pub async fn start(cfg: Config) -> Result<Node, AppError> {
        let cfg = Arc::new(cfg);
        // Reached only with --insecure (otherwise loading the config refused these).
        for (key, problem) in cfg.exposed() {
            warn!(key, "INSECURE: {problem}");
        }
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
        let metrics_l = bind("metrics", cfg.listen.metrics).await?;
        let advertise =
            |l: &TcpListener, fallback| cfg.advertised(l.local_addr().unwrap_or(fallback));
        let self_info = MemberInfo {
            peer_addr: cfg.peers.get(&cfg.node_id).cloned(),
            sentinel_addr: Some(advertise(&sentinel_l, cfg.listen.sentinel)),
            grpc_addr: Some(advertise(&grpc_l, cfg.listen.grpc)),
            run_id: Some(run_id.clone()),
            command_version: Some(crate::fsm::SUPPORTED_VERSION),
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
        // An empty data dir bootstraps only in a cluster said to be new, and only after the
        // configured peers were asked (see `net::boot`); otherwise the node waits to be added
        // or re-admitted, without a vote: it may have voted and acknowledged entries before
        // its data was lost.
        let new_cluster = cfg.raft.initial_cluster_state == InitialClusterState::New;
        let boot = if !recovered.fresh {
            Boot::Join
        } else if new_cluster && cfg.peers.len() == 1 && cfg.peers.contains_key(&cfg.node_id) {
            Boot::Now(vec![cfg.node_id])
        } else if new_cluster {
            Boot::Decide
        } else {
            Boot::Join
        };
        let deciding = boot == Boot::Decide;
        // Mutual TLS on the peer and API ports when configured: both sides present a
        // certificate from the cluster CA.
        let tls = match &cfg.tls {
            Some(t) => Some(
                t.load()
                    .and_then(|p| p.mutual())
                    .map_err(|e| AppError::Tls(e.to_string()))?,
            ),
            None => None,
        };
        let server_tls = tls.as_ref().map(|(cert, key, ca)| {
            ServerTlsConfig::new()
                .identity(Identity::from_pem(cert, key))
                .client_ca_root(Certificate::from_pem(ca))
        });
        let client_tls = tls.as_ref().map(|(cert, key, ca)| {
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(cert, key))
        });
        let cluster_key = cfg
            .cluster_secret
            .as_deref()
            .map(|s| Arc::new(ClusterKey::new(s.as_bytes())));
        let mailbox = RaftNode::mailbox();
        let transport = PeerNetwork::new(
            cfg.node_id,
            cfg.raft.cluster_id.clone(),
            mailbox.0.clone(),
            client_tls.clone(),
            cluster_key.clone(),
        );
        let (raft, node_task) = RaftNode::start_with(
            node_cfg,
            store,
            recovered,
            boot,
            mailbox,
            Box::new(transport),
            shutdown.clone(),
        )?;
        let mut tasks = vec![node_task];
        if deciding {
            tasks.push(tokio::spawn(
                crate::net::boot::decide(
                    raft.clone(),
                    cfg.raft.cluster_id.clone(),
                    cfg.peers.clone(),
                    client_tls.clone(),
                    cluster_key.clone(),
                    shutdown.clone(),
                )
                .instrument(info_span!("boot")),
            ));
        }

        let peer_svc = pb::peer::raft_peer_server::RaftPeerServer::new(PeerService::new(
            raft.clone(),
            cfg.raft.cluster_id.clone(),
            cfg.peers.clone(),
            cluster_key,
        ))
        .max_decoding_message_size(MAX_PEER_MESSAGE);
        tasks.push(serve_grpc(
            "peer",
            peer_l,
            server_tls.clone(),
            shutdown.clone(),
            None,
            move |b| b.add_service(peer_svc),
        )?);

        if let Some(t) = &cfg.redis_tls {
            let pem = t.load().map_err(|e| AppError::Tls(e.to_string()))?;
            crate::instance::link::configure_tls(crate::instance::link::RedisTls {
                ca: pem.ca,
                client: pem.identity,
            });
        }
        // Every node checks that each master's Redis user may run what the coordinator sends.
        tasks.push(tokio::spawn(
            crate::instance::acl::run(raft.clone(), shutdown.clone())
                .instrument(info_span!("redis_acl_check")),
        ));
        // Monitoring runs on every node; the failover executor acts only on the leader. Each
        // runs on its own runtime and thread (as the Raft node does), so that thousands of
        // client connections on the shared runtime cannot delay a probe's PING (a late reply
        // counts towards down-after), and the hundreds of probes cannot delay the steps of a
        // failover (K promotions waited behind a busy probe thread, tens of ms each step).
        // Everything they spawn (probes, discovery, holds; failover jobs and their Redis
        // connections) lands on their own runtime too.
        // Node-local timing knobs, set at run time with SENTINEL DEBUG.
        let tuning = Arc::new(crate::tuning::Tuning::default());
        let probe_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("monitor-{}", cfg.node_id))
            .enable_all()
            .build()
            .map_err(AppError::Runtime)?;
        let failover_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("failover-{}", cfg.node_id))
            .enable_all()
            .build()
            .map_err(AppError::Runtime)?;
        let (monitor_view, monitor_task) = {
            let _on_probe_rt = probe_rt.enter();
            crate::monitor::spawn(raft.clone(), tuning.clone(), shutdown.clone())
        };
        let failover_task = {
            let _on_failover_rt = failover_rt.enter();
            crate::failover::spawn(raft.clone(), monitor_view.clone(), shutdown.clone())
        };
        tasks.push(monitor_task);
        tasks.push(failover_task);

        // Notification and client-reconfig scripts, on every node.
        let scripts = Arc::new(crate::scripts::Scripts::default());
        tasks.push(tokio::spawn(
            crate::scripts::run(
                raft.clone(),
                scripts.clone(),
                cfg.data_dir.clone(),
                shutdown.clone(),
            )
            .instrument(info_span!("scripts")),
        ));

        for hook in cfg.webhooks.clone() {
            let span = info_span!("webhook", url = %hook.url);
            tasks.push(tokio::spawn(
                crate::webhooks::run(raft.clone(), hook, shutdown.clone()).instrument(span),
            ));
        }

        // Keep the Raft leader off hosts that run monitored masters (acts only on the leader).
        tasks.push(tokio::spawn(
            crate::placement::run(raft.clone(), shutdown.clone())
                .instrument(info_span!("leader_placement")),
        ));

        // Metrics, health and readiness on their own port.
        let sentinel_stats = Arc::new(crate::api::resp::clients::Stats::default());
        let grpc_stats = Arc::new(GrpcPortStats::new(&API_DESCRIPTORS));
        let node_metrics = crate::metrics::NodeMetrics::new(
            raft.clone(),
            monitor_view.clone(),
            crate::metrics::PortStats {
                sentinel: sentinel_stats.clone(),
                grpc: grpc_stats.clone(),
            },
        );
        tasks.push(tokio::spawn(
            crate::metrics::count_events(raft.clone(), node_metrics.events(), shutdown.clone())
                .instrument(info_span!("metrics_events")),
        ));
        tasks.push(tokio::spawn(
            crate::metrics::serve(metrics_l, node_metrics, shutdown.clone())
                .instrument(info_span!("metrics_port")),
        ));

        // Public API with grpc.health.v1 and server reflection beside it. The API checks its
        // credential before any handler runs; health and reflection stay open (probes and
        // tools that discover the schema carry no credential, and neither reveals state).
        let api = crate::api::auth::Authenticated::new(
            pb::api::coordinator_server::CoordinatorServer::new(CoordinatorService::new(
                raft.clone(),
                monitor_view.clone(),
            )),
            Arc::new(crate::api::auth::ApiAuth::new(
                cfg.api_credential(),
                cfg.api_open_reads,
            )),
        );
        let (health, health_svc) = tonic_health::server::health_reporter();
        tasks.push(tokio::spawn(
            report_health(health, raft.clone(), shutdown.clone())
                .instrument(info_span!("grpc_health")),
        ));
        // Reflection in both versions (many tools still speak only v1alpha), each describing
        // exactly the services this port serves.
        let reflection = || {
            API_DESCRIPTORS.iter().fold(
                tonic_reflection::server::Builder::configure().include_reflection_service(false),
                |b, d| b.register_encoded_file_descriptor_set(d),
            )
        };
        let reflection_v1 = reflection()
            .build_v1()
            .expect("embedded descriptors are valid");
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .expect("embedded descriptors are valid");
        // The Raft peer service is served on the peer port only.
        tasks.push(serve_grpc(
            "grpc",
            grpc_l,
            server_tls,
            shutdown.clone(),
            Some(grpc_stats.clone()),
            move |b| {
                b.add_service(Counted::new(api, grpc_stats.clone()))
                    .add_service(Counted::new(health_svc, grpc_stats.clone()))
                    .add_service(Counted::new(reflection_v1, grpc_stats.clone()))
                    .add_service(Counted::new(reflection_v1alpha, grpc_stats.clone()))
            },
        )?);

        // The Sentinel-compatible port answers from this node's applied state and monitor view.
        let mut resp_ctx = crate::api::resp::RespContext::new(
            raft.clone(),
            monitor_view.clone(),
            cfg.requirepass.clone(),
            run_id.clone(),
            advertise(&sentinel_l, cfg.listen.sentinel),
        );
        resp_ctx.stats = sentinel_stats;
        resp_ctx.scripts = scripts;
        resp_ctx.tuning = tuning;
        resp_ctx.announce_ip = cfg.listen.announce_ip.clone();
        resp_ctx.sentinel_listen =
            cfg.unannounced(sentinel_l.local_addr().unwrap_or(cfg.listen.sentinel));
        resp_ctx.deny_scripts_reconfig = cfg.deny_scripts_reconfig;
        resp_ctx.options = crate::api::resp::RespOptions::from_config(&cfg.sentinel_port);
        if let Some(t) = &cfg.sentinel_tls {
            let pem = t.load().map_err(|e| AppError::Tls(e.to_string()))?;
            let Some((cert, key)) = &pem.identity else {
                return Err(AppError::Tls(format!(
                    "config key `{}.cert`: missing",
                    pem.table
                )));
            };
            let acceptor = crate::api::resp::stream::acceptor(cert, key, pem.ca.as_deref())
                .map_err(|e| AppError::Tls(e.to_string()))?;
            resp_ctx.options.tls = Some(acceptor);
        }
        // The port's connections run on their own runtime, by default one thread like
        // Sentinel's event loop: a connection is served on the thread that saw it readable,
        // with no hand-off between workers and no second thread polling the reactor, which
        // is most of the cost of a short request (context switches and epoll calls per
        // request). It also keeps client load off the runtime of the gRPC and metrics ports.
        let port_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.sentinel_port.threads)
            .thread_name(format!("sentinel-port-{}", cfg.node_id))
            .enable_all()
            .build()
            .map_err(AppError::Runtime)?;
        // The listener moves to that runtime's reactor (accepted sockets register with the
        // runtime that accepts them).
        let sentinel_l = sentinel_l.into_std().map_err(|source| AppError::Bind {
            what: "sentinel",
            addr: cfg.listen.sentinel,
            source,
        })?;
        let port_shutdown = shutdown.clone();
        tasks.push(
            port_rt.spawn(
                async move {
                    match TcpListener::from_std(sentinel_l) {
                        Ok(l) => crate::api::resp::serve(l, resp_ctx, port_shutdown).await,
                        Err(e) => error!(error = %e, "sentinel port: cannot register the listener"),
                    }
                }
                .instrument(info_span!("sentinel_port")),
            ),
        );

        Ok(Node {
            raft,
            monitor_view,
            trigger,
            tasks,
            probe_rt: Some(probe_rt),
            port_rt: Some(port_rt),
            failover_rt: Some(failover_rt),
        })
    }

    /// Stops every task and waits for them (bounded by a grace period).
    pub async fn stop(mut self) {
        self.trigger.trigger();
        let all = futures::future::join_all(std::mem::take(&mut self.tasks));
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
    tls: Option<ServerTlsConfig>,
    mut shutdown: Shutdown,
    count: Option<Arc<GrpcPortStats>>,
    add: impl FnOnce(&mut tonic::transport::Server) -> tonic::transport::server::Router,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let mut server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .concurrency_limit_per_connection(256);
    if let Some(t) = tls {
        server = server
            .tls_config(t)
            .map_err(|e| AppError::Tls(format!("{what} port: {e}")))?;
    }
    let router = add(&mut server);
    Ok(tokio::spawn(
        async move {
            let incoming = TcpListenerStream::new(listener).map(move |accepted| {
                accepted.map(|s| {
                    // Only tonic's own listener applies the builder's nodelay.
                    let _ = s.set_nodelay(true);
                    CountedStream::new(s, count.clone())
                })
            });
            let res = router
                .serve_with_incoming_shutdown(incoming, async move { shutdown.recv().await })
                .await;
            if let Err(e) = res {
                error!(error = %e, "gRPC server failed");
            }
        }
        .instrument(info_span!("grpc", port = what)),
    ))
}

/// Keeps `grpc.health.v1` current: the process is always SERVING (liveness), while the
/// Coordinator service is SERVING only when this node is in contact with a Raft leader and
/// may vouch for its answers (readiness).
async fn report_health(
    health: tonic_health::server::HealthReporter,
    raft: RaftHandle,
    mut shutdown: Shutdown,
) {
    type Api = pb::api::coordinator_server::CoordinatorServer<CoordinatorService>;
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => {
                health.set_not_serving::<Api>().await;
                return;
            }
        }
        let ok = raft.has_leader_contact();
        if last != Some(ok) {
            if ok {
                health.set_serving::<Api>().await;
            } else {
                health.set_not_serving::<Api>().await;
            }
            last = Some(ok);
        }
    }
}

/// Runs a node until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let node = Node::start(cfg).await?;
    shutdown::signal().await;
    info!("shutting down");
    node.stop().await;
    Ok(())
}
