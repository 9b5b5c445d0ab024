//! Composition root: builds a node from its [`Config`], spawns every task with a span, and
//! shuts them down in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tracing::{error, info, info_span, warn, Instrument, Span};

use crate::api::grpc::CoordinatorService;
use crate::api::grpc_port::{Counted, CountedStream, GrpcPortStats};
use crate::config::Config;
use crate::config::InitialClusterState;
use crate::consensus::{
    Boot, DiskStore, NodeConfig, RaftHandle, RaftNode, Recovered, StartError, StoreError,
};
use crate::fsm::MemberInfo;
use crate::instance::link::Connector;
use crate::metrics::PortStats;
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
    // Held only to be dropped with the node; first, so before the shutdown trigger.
    /// The runtime of the monitor (see [`Launch::start_monitor_and_failover`]).
    _probe_rt: OwnRuntime,
    /// The runtime of the failover executor (see [`Launch::start_monitor_and_failover`]).
    _failover_rt: OwnRuntime,
    /// The runtime of the Sentinel port's connections (see [`Launch::serve_sentinel_port`]).
    _port_rt: OwnRuntime,
    /// Handle to its Raft task.
    pub raft: RaftHandle,
    /// This node's local view of every Redis instance (written by the monitor).
    pub monitor_view: watch::Receiver<Arc<crate::view::MonitorView>>,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Opens storage, binds every port and starts every task, in this order: the Raft node
    /// and the peer port first, then what acts on Redis (ACL check, monitor, failover
    /// executor, scripts, webhooks, leader placement), then the ports clients use (metrics,
    /// gRPC API, Sentinel port).
    pub async fn start(cfg: Config) -> Result<Node, AppError> {
        let cfg = Arc::new(cfg);
        // Reached only with --insecure (otherwise loading the config refused these).
        for (key, problem) in cfg.exposed() {
            warn!(key, "INSECURE: {problem}");
        }
        let (trigger, shutdown) = shutdown::channel();
        let (store, recovered) = open_data_dir(&cfg)?;
        let run_id = recovered.run_id.clone();
        // Bind first, so a port conflict fails before the node joins the cluster.
        let ports = Ports::bind(&cfg).await?;
        let security = PortSecurity::load(&cfg)?;
        let mut launch = Launch {
            cfg,
            shutdown,
            tasks: Vec::new(),
        };
        let raft = launch.start_raft(store, recovered, &ports, &security)?;
        launch.serve_peer_port(ports.peer, &raft, &security)?;
        let connector = launch.check_redis_access(&raft)?;
        // Node-local timing knobs, set at run time with SENTINEL DEBUG.
        let tuning = Arc::new(crate::tuning::Tuning::default());
        let (monitor_view, tilt_view, probe_rt, failover_rt) =
            launch.start_monitor_and_failover(&raft, &tuning, &connector)?;
        let scripts = launch.start_notifications(&raft);
        // Keep the Raft leader off hosts that run monitored masters (acts only on the leader).
        launch.spawn(
            info_span!("leader_placement"),
            crate::placement::run(raft.clone(), launch.shutdown.clone()),
        );
        let stats = PortStats {
            sentinel: Arc::new(crate::api::resp::clients::Stats::default()),
            grpc: Arc::new(GrpcPortStats::new(&API_DESCRIPTORS)),
        };
        launch.serve_metrics(
            ports.metrics,
            &raft,
            &monitor_view,
            &tilt_view,
            stats.clone(),
        );
        launch.serve_api(
            ports.grpc,
            &raft,
            &monitor_view,
            security.server_tls,
            stats.grpc,
        )?;
        let port_rt = launch.serve_sentinel_port(
            ports.sentinel,
            &raft,
            &monitor_view,
            SentinelPortParts {
                run_id,
                stats: stats.sentinel,
                scripts,
                tuning,
                tilt: tilt_view,
            },
        )?;
        Ok(Node {
            _probe_rt: probe_rt,
            _failover_rt: failover_rt,
            _port_rt: port_rt,
            raft,
            monitor_view,
            trigger,
            tasks: launch.tasks,
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

/// A runtime of its own for one part of the node. It is shut down without waiting for its
/// tasks when dropped: a runtime may not be dropped (which blocks) inside another runtime,
/// and a node is dropped from async code, also when its start fails half-way.
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    /// A runtime with `threads` worker threads named `name`.
    fn build(name: String, threads: usize) -> Result<OwnRuntime, AppError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(AppError::Runtime)?;
        Ok(OwnRuntime(Some(rt)))
    }

    fn get(&self) -> &Runtime {
        self.0.as_ref().expect("taken only when dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Opens the Raft store in the data dir.
fn open_data_dir(cfg: &Config) -> Result<(DiskStore, Recovered), AppError> {
    let (store, recovered) = DiskStore::open(&cfg.data_dir, cfg.node_id, &cfg.raft.cluster_id)?;
    info!(
        node_id = cfg.node_id,
        applied = recovered.applied,
        fresh = recovered.fresh,
        "opened data dir"
    );
    Ok((store, recovered))
}

/// The node's four ports, bound before anything starts.
struct Ports {
    peer: TcpListener,
    grpc: TcpListener,
    sentinel: TcpListener,
    metrics: TcpListener,
}

impl Ports {
    async fn bind(cfg: &Config) -> Result<Ports, AppError> {
        Ok(Ports {
            peer: bind("peer", cfg.listen.peer).await?,
            grpc: bind("grpc", cfg.listen.grpc).await?,
            sentinel: bind("sentinel", cfg.listen.sentinel).await?,
            metrics: bind("metrics", cfg.listen.metrics).await?,
        })
    }
}

/// The address others should use for the port `l` listens on (`fallback`: its configured
/// address, should the socket not say).
fn advertised(cfg: &Config, l: &TcpListener, fallback: SocketAddr) -> String {
    cfg.advertised(l.local_addr().unwrap_or(fallback))
}

/// How the peer and API ports authenticate the other side: mutual TLS when configured (both
/// sides present a certificate from the cluster CA), and the cluster secret on peer traffic.
struct PortSecurity {
    server_tls: Option<ServerTlsConfig>,
    client_tls: Option<ClientTlsConfig>,
    cluster_key: Option<Arc<ClusterKey>>,
}

impl PortSecurity {
    fn load(cfg: &Config) -> Result<PortSecurity, AppError> {
        let tls = match &cfg.tls {
            Some(t) => Some(
                t.load()
                    .and_then(|p| p.mutual())
                    .map_err(|e| AppError::Tls(e.to_string()))?,
            ),
            None => None,
        };
        Ok(PortSecurity {
            server_tls: tls.as_ref().map(|(cert, key, ca)| {
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(cert, key))
                    .client_ca_root(Certificate::from_pem(ca))
            }),
            client_tls: tls.as_ref().map(|(cert, key, ca)| {
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key))
            }),
            cluster_key: cfg
                .cluster_secret
                .as_deref()
                .map(|s| Arc::new(ClusterKey::new(s.as_bytes()))),
        })
    }
}

/// How a node starts on its store. An empty data dir bootstraps only in a cluster said to be
/// new, and only after the configured peers were asked (see `net::boot`); otherwise the node
/// waits to be added or re-admitted, without a vote: it may have voted and acknowledged
/// entries before its data was lost.
fn boot_mode(cfg: &Config, fresh: bool) -> Boot {
    let new_cluster = cfg.raft.initial_cluster_state == InitialClusterState::New;
    if !fresh {
        Boot::Join
    } else if new_cluster && cfg.peers.len() == 1 && cfg.peers.contains_key(&cfg.node_id) {
        Boot::Now(vec![cfg.node_id])
    } else if new_cluster {
        Boot::Decide
    } else {
        Boot::Join
    }
}

/// What the Sentinel port shares with the rest of the node.
struct SentinelPortParts {
    /// This node's run id (`SENTINEL MYID`).
    run_id: String,
    /// The port's counters, also read by the metrics port.
    stats: Arc<crate::api::resp::clients::Stats>,
    /// The script queue the port reports.
    scripts: Arc<crate::scripts::Scripts>,
    /// The timing knobs `SENTINEL DEBUG` sets, shared with the monitor.
    tuning: Arc<crate::tuning::Tuning>,
    /// This node's TILT state (the port publishes `+tilt`/`-tilt` from it).
    tilt: watch::Receiver<crate::view::TiltView>,
}

/// A node being started: each method starts one part of it. Holds what they all need: the
/// config, the shutdown token every task gets, and the tasks spawned so far (which
/// [`Node::stop`] waits for).
struct Launch {
    cfg: Arc<Config>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Launch {
    /// Spawns `task` on the current runtime, in `span`.
    fn spawn(&mut self, span: Span, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task.instrument(span)));
    }

    /// The Raft node on the opened store, with its transport to the peers; on an empty data
    /// dir of a new cluster also the task that asks the peers whether to bootstrap.
    fn start_raft(
        &mut self,
        store: DiskStore,
        recovered: Recovered,
        ports: &Ports,
        security: &PortSecurity,
    ) -> Result<RaftHandle, AppError> {
        let cfg = self.cfg.clone();
        let self_info = MemberInfo {
            peer_addr: cfg.peers.get(&cfg.node_id).cloned(),
            sentinel_addr: Some(advertised(&cfg, &ports.sentinel, cfg.listen.sentinel)),
            grpc_addr: Some(advertised(&cfg, &ports.grpc, cfg.listen.grpc)),
            run_id: Some(recovered.run_id.clone()),
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
        let boot = boot_mode(&cfg, recovered.fresh);
        let deciding = boot == Boot::Decide;
        let mailbox = RaftNode::mailbox();
        let transport = PeerNetwork::new(
            cfg.node_id,
            cfg.raft.cluster_id.clone(),
            mailbox.0.clone(),
            security.client_tls.clone(),
            security.cluster_key.clone(),
        );
        let (raft, node_task) = RaftNode::start_with(
            node_cfg,
            store,
            recovered,
            boot,
            mailbox,
            Box::new(transport),
            self.shutdown.clone(),
        )?;
        self.tasks.push(node_task);
        if deciding {
            let decide = crate::net::boot::decide(
                raft.clone(),
                cfg.raft.cluster_id.clone(),
                cfg.peers.clone(),
                security.client_tls.clone(),
                security.cluster_key.clone(),
                self.shutdown.clone(),
            );
            self.spawn(info_span!("boot"), decide);
        }
        Ok(raft)
    }

    /// The Raft peer service, served on the peer port only.
    fn serve_peer_port(
        &mut self,
        listener: TcpListener,
        raft: &RaftHandle,
        security: &PortSecurity,
    ) -> Result<(), AppError> {
        let peer_svc = pb::peer::raft_peer_server::RaftPeerServer::new(PeerService::new(
            raft.clone(),
            self.cfg.raft.cluster_id.clone(),
            self.cfg.peers.clone(),
            security.cluster_key.clone(),
        ))
        .max_decoding_message_size(MAX_PEER_MESSAGE);
        self.tasks.push(serve_grpc(
            "peer",
            listener,
            security.server_tls.clone(),
            self.shutdown.clone(),
            None,
            move |b| b.add_service(peer_svc),
        )?);
        Ok(())
    }

    /// TLS of the connections to Redis, and the task by which every node checks that each
    /// master's Redis user may run what the coordinator sends. Returns the connector (this
    /// node's TLS material) that every task connecting to Redis is given.
    fn check_redis_access(&mut self, raft: &RaftHandle) -> Result<Connector, AppError> {
        let tls = match &self.cfg.redis_tls {
            Some(t) => {
                let pem = t.load().map_err(|e| AppError::Tls(e.to_string()))?;
                Some(crate::instance::link::RedisTls {
                    ca: pem.ca,
                    client: pem.identity,
                })
            }
            None => None,
        };
        let connector = Connector::new(tls);
        let acl = crate::instance::acl::run(raft.clone(), connector.clone(), self.shutdown.clone());
        self.spawn(info_span!("redis_acl_check"), acl);
        Ok(connector)
    }

    /// Monitoring runs on every node; the failover executor acts only on the leader. Each
    /// runs on its own runtime and thread (as the Raft node does), so that thousands of
    /// client connections on the shared runtime cannot delay a probe's PING (a late reply
    /// counts towards down-after), and the hundreds of probes cannot delay the steps of a
    /// failover (K promotions waited behind a busy probe thread, tens of ms each step).
    /// Everything they spawn (probes, discovery, holds; failover jobs and their Redis
    /// connections) lands on their own runtime too.
    fn start_monitor_and_failover(
        &mut self,
        raft: &RaftHandle,
        tuning: &Arc<crate::tuning::Tuning>,
        connector: &Connector,
    ) -> Result<MonitorParts, AppError> {
        let node_id = self.cfg.node_id;
        let probe_rt = OwnRuntime::build(format!("monitor-{node_id}"), 1)?;
        let failover_rt = OwnRuntime::build(format!("failover-{node_id}"), 1)?;
        let (monitor_view, tilt_view, monitor_task) = {
            let _on_probe_rt = probe_rt.get().enter();
            crate::monitor::spawn(
                raft.clone(),
                tuning.clone(),
                connector.clone(),
                self.shutdown.clone(),
            )
        };
        let failover_task = {
            let _on_failover_rt = failover_rt.get().enter();
            crate::failover::spawn(
                raft.clone(),
                monitor_view.clone(),
                connector.clone(),
                self.shutdown.clone(),
            )
        };
        self.tasks.push(monitor_task);
        self.tasks.push(failover_task);
        Ok((monitor_view, tilt_view, probe_rt, failover_rt))
    }

    /// Notification and client-reconfig scripts and the webhooks, on every node. Returns the
    /// script queue (the Sentinel port reports it).
    fn start_notifications(&mut self, raft: &RaftHandle) -> Arc<crate::scripts::Scripts> {
        let scripts = Arc::new(crate::scripts::Scripts::default());
        let run_scripts = crate::scripts::run(
            raft.clone(),
            scripts.clone(),
            self.cfg.data_dir.clone(),
            self.shutdown.clone(),
        );
        self.spawn(info_span!("scripts"), run_scripts);
        for hook in self.cfg.webhooks.clone() {
            let span = info_span!("webhook", url = %hook.url);
            let post = crate::webhooks::run(raft.clone(), hook, self.shutdown.clone());
            self.spawn(span, post);
        }
        scripts
    }

    /// Metrics, health and readiness on their own port.
    fn serve_metrics(
        &mut self,
        listener: TcpListener,
        raft: &RaftHandle,
        monitor_view: &watch::Receiver<Arc<crate::view::MonitorView>>,
        tilt: &watch::Receiver<crate::view::TiltView>,
        stats: PortStats,
    ) {
        let node_metrics = crate::metrics::NodeMetrics::new(
            raft.clone(),
            monitor_view.clone(),
            tilt.clone(),
            stats,
        );
        let count = crate::metrics::count_events(
            raft.clone(),
            node_metrics.events(),
            self.shutdown.clone(),
        );
        self.spawn(info_span!("metrics_events"), count);
        let serve = crate::metrics::serve(listener, node_metrics, self.shutdown.clone());
        self.spawn(info_span!("metrics_port"), serve);
    }

    /// Public API with grpc.health.v1 and server reflection beside it. The API checks its
    /// credential before any handler runs; health and reflection stay open (probes and
    /// tools that discover the schema carry no credential, and neither reveals state).
    fn serve_api(
        &mut self,
        listener: TcpListener,
        raft: &RaftHandle,
        monitor_view: &watch::Receiver<Arc<crate::view::MonitorView>>,
        tls: Option<ServerTlsConfig>,
        stats: Arc<GrpcPortStats>,
    ) -> Result<(), AppError> {
        let api = crate::api::auth::Authenticated::new(
            pb::api::coordinator_server::CoordinatorServer::new(CoordinatorService::new(
                raft.clone(),
                monitor_view.clone(),
            )),
            Arc::new(crate::api::auth::ApiAuth::new(
                self.cfg.api_credential(),
                self.cfg.api_open_reads,
            )),
        );
        let (health, health_svc) = tonic_health::server::health_reporter();
        let report = report_health(health, raft.clone(), self.shutdown.clone());
        self.spawn(info_span!("grpc_health"), report);
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
        self.tasks.push(serve_grpc(
            "grpc",
            listener,
            tls,
            self.shutdown.clone(),
            Some(stats.clone()),
            move |b| {
                b.add_service(Counted::new(api, stats.clone()))
                    .add_service(Counted::new(health_svc, stats.clone()))
                    .add_service(Counted::new(reflection_v1, stats.clone()))
                    .add_service(Counted::new(reflection_v1alpha, stats.clone()))
            },
        )?);
        Ok(())
    }

    /// The Sentinel-compatible port, answering from this node's applied state and monitor
    /// view.
    fn serve_sentinel_port(
        &mut self,
        listener: TcpListener,
        raft: &RaftHandle,
        monitor_view: &watch::Receiver<Arc<crate::view::MonitorView>>,
        parts: SentinelPortParts,
    ) -> Result<OwnRuntime, AppError> {
        let cfg = self.cfg.clone();
        let mut ctx = crate::api::resp::RespContext::new(
            raft.clone(),
            monitor_view.clone(),
            cfg.requirepass.clone(),
            parts.run_id,
            advertised(&cfg, &listener, cfg.listen.sentinel),
        );
        ctx.stats = parts.stats;
        ctx.scripts = parts.scripts;
        ctx.tuning = parts.tuning;
        ctx.tilt = parts.tilt;
        ctx.announce_ip = cfg.listen.announce_ip.clone();
        ctx.sentinel_listen = cfg.unannounced(listener.local_addr().unwrap_or(cfg.listen.sentinel));
        ctx.deny_scripts_reconfig = cfg.deny_scripts_reconfig;
        ctx.options = crate::api::resp::RespOptions::from_config(&cfg.sentinel_port);
        ctx.options.tls = sentinel_tls(&cfg)?;
        // The port's connections run on their own runtime, by default one thread like
        // Sentinel's event loop: a connection is served on the thread that saw it readable,
        // with no hand-off between workers and no second thread polling the reactor, which
        // is most of the cost of a short request (context switches and epoll calls per
        // request). It also keeps client load off the runtime of the gRPC and metrics ports.
        let port_rt = OwnRuntime::build(
            format!("sentinel-port-{}", cfg.node_id),
            cfg.sentinel_port.threads,
        )?;
        // The listener moves to that runtime's reactor (accepted sockets register with the
        // runtime that accepts them).
        let listener = listener.into_std().map_err(|source| AppError::Bind {
            what: "sentinel",
            addr: cfg.listen.sentinel,
            source,
        })?;
        let shutdown = self.shutdown.clone();
        let serve = async move {
            match TcpListener::from_std(listener) {
                Ok(l) => crate::api::resp::serve(l, ctx, shutdown).await,
                Err(e) => error!(error = %e, "sentinel port: cannot register the listener"),
            }
        };
        self.tasks.push(
            port_rt
                .get()
                .spawn(serve.instrument(info_span!("sentinel_port"))),
        );
        Ok(port_rt)
    }
}

/// The monitor's view, its TILT state, and the runtimes of the monitor and the failover
/// executor.
type MonitorParts = (
    watch::Receiver<Arc<crate::view::MonitorView>>,
    watch::Receiver<crate::view::TiltView>,
    OwnRuntime,
    OwnRuntime,
);

/// The TLS acceptor of the Sentinel port (`security.sentinel_tls`), if configured.
fn sentinel_tls(cfg: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, AppError> {
    let Some(t) = &cfg.sentinel_tls else {
        return Ok(None);
    };
    let pem = t.load().map_err(|e| AppError::Tls(e.to_string()))?;
    let Some((cert, key)) = &pem.identity else {
        return Err(AppError::Tls(format!(
            "config key `{}.cert`: missing",
            pem.table
        )));
    };
    let acceptor = crate::api::resp::stream::acceptor(cert, key, pem.ca.as_deref())
        .map_err(|e| AppError::Tls(e.to_string()))?;
    Ok(Some(acceptor))
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
