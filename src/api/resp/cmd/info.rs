//! `INFO` (sections server, clients, cpu, stats, sentinel, as a Sentinel has) and `ROLE`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{Reply, Shared};
use crate::api::resp::clients::Limit;
use crate::api::resp::frame::Frame;
use crate::api::resp::parse::Parse;
use crate::api::resp::REDIS_VERSION;
use crate::fsm::ClusterState;

/// `ROLE` → `["sentinel", [master names]]` (redis-rs requires exactly this shape).
pub fn role(sh: &Shared) -> Reply {
    let st = sh.ctx.raft.state();
    let names = st.masters.keys().map(|n| Frame::bulk(n.clone())).collect();
    Frame::Array(vec![Frame::bulk_static("sentinel"), Frame::Array(names)]).into()
}

/// In the order a real Sentinel prints them.
const SECTIONS: [&str; 5] = ["server", "clients", "stats", "cpu", "sentinel"];

/// `INFO [section ...]`: always a plain bulk string, in RESP3 too.
pub fn info(p: &mut Parse, sh: &Shared) -> Reply {
    let mut wanted: Vec<String> = Vec::new();
    while let Ok(s) = p.next_string() {
        wanted.push(s.to_ascii_lowercase());
    }
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "default" || w == "all" || w == "everything");
    let mut out = String::with_capacity(2048);
    for sec in SECTIONS {
        if !(all || wanted.iter().any(|w| w == sec)) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match sec {
            "server" => server(&mut out, sh),
            "clients" => clients(&mut out, sh),
            "cpu" => cpu(&mut out),
            "stats" => stats(&mut out, sh),
            _ => sentinel(&mut out, sh, &sh.ctx.raft.state()),
        }
    }
    Frame::bulk(out).into()
}

fn server(o: &mut String, sh: &Shared) {
    let up = sh.started.elapsed().as_secs();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = write!(
        o,
        "# Server\r\n\
         redis_version:{REDIS_VERSION}\r\n\
         redis_git_sha1:00000000\r\n\
         redis_git_dirty:0\r\n\
         redis_build_id:0\r\n\
         redis_mode:sentinel\r\n\
         os:{} {}\r\n\
         arch_bits:{}\r\n\
         monotonic_clock:POSIX clock_gettime\r\n\
         multiplexing_api:epoll\r\n\
         atomicvar_api:c11-builtin\r\n\
         gcc_version:0.0.0\r\n\
         process_id:{}\r\n\
         process_supervised:no\r\n\
         run_id:{}\r\n\
         tcp_port:{}\r\n\
         server_time_usec:{now_us}\r\n\
         uptime_in_seconds:{up}\r\n\
         uptime_in_days:{}\r\n\
         hz:10\r\n\
         configured_hz:10\r\n\
         lru_clock:0\r\n\
         executable:{exe}\r\n\
         config_file:\r\n\
         io_threads_active:0\r\n\
         raft_sentinel_version:{}\r\n\
         raft_node_id:{}\r\n",
        std::env::consts::OS,
        std::env::consts::ARCH,
        usize::BITS,
        std::process::id(),
        sh.ctx.run_id,
        sh.port,
        up / 86400,
        env!("CARGO_PKG_VERSION"),
        sh.ctx.raft.node_id(),
    );
}

fn clients(o: &mut String, sh: &Shared) {
    let _ = write!(
        o,
        "# Clients\r\n\
         connected_clients:{}\r\n\
         cluster_connections:0\r\n\
         maxclients:{}\r\n\
         client_recent_max_input_buffer:0\r\n\
         client_recent_max_output_buffer:0\r\n\
         blocked_clients:0\r\n\
         tracking_clients:0\r\n\
         clients_in_timeout_table:0\r\n",
        sh.stats.connected.load(Ordering::Relaxed),
        sh.ctx.options.max_connections,
    );
}

/// Process CPU time from `/proc/self/stat` (Linux); zeros elsewhere.
fn cpu(o: &mut String) {
    let (user, sys) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
        })
        .unwrap_or((0.0, 0.0));
    let _ = write!(
        o,
        "# CPU\r\n\
         used_cpu_sys:{sys:.6}\r\n\
         used_cpu_user:{user:.6}\r\n\
         used_cpu_sys_children:0.000000\r\n\
         used_cpu_user_children:0.000000\r\n"
    );
}

fn stats(o: &mut String, sh: &Shared) {
    let s = &sh.stats;
    let (channels, patterns) = sh.clients.pubsub_counts();
    let _ = write!(
        o,
        "# Stats\r\n\
         total_connections_received:{}\r\n\
         total_commands_processed:{}\r\n\
         instantaneous_ops_per_sec:0\r\n\
         total_net_input_bytes:{}\r\n\
         total_net_output_bytes:{}\r\n\
         rejected_connections:{}\r\n\
         pubsub_channels:{channels}\r\n\
         pubsub_patterns:{patterns}\r\n\
         pubsubshard_channels:0\r\n\
         unexpected_error_replies:0\r\n\
         total_error_replies:{}\r\n",
        s.connections_received.load(Ordering::Relaxed),
        s.commands_processed.load(Ordering::Relaxed),
        s.net_input_bytes.load(Ordering::Relaxed),
        s.net_output_bytes.load(Ordering::Relaxed),
        s.rejected_connections.load(Ordering::Relaxed),
        s.error_replies.load(Ordering::Relaxed),
    );
    // Redis 7.4's names for closes at the input and output limits, then every client limit
    // of the port on its own line (refused at accept or closed).
    let l = &s.limits;
    let _ = write!(
        o,
        "client_query_buffer_limit_disconnections:{}\r\n\
         client_output_buffer_limit_disconnections:{}\r\n",
        l.get(Limit::RequestTooLarge),
        l.get(Limit::PubsubOutput) + l.get(Limit::PubsubLag),
    );
    for limit in Limit::ALL {
        let _ = write!(o, "limit_{}:{}\r\n", limit.name(), l.get(limit));
    }
}

fn sentinel(o: &mut String, sh: &Shared, st: &ClusterState) {
    let tilt_since = sh.ctx.tilt.borrow().since;
    let (running, queued) = sh.ctx.scripts.counts();
    let _ = write!(
        o,
        "# Sentinel\r\n\
         sentinel_masters:{}\r\n\
         sentinel_tilt:{}\r\n\
         sentinel_tilt_since_seconds:{}\r\n\
         sentinel_running_scripts:{}\r\n\
         sentinel_scripts_queue_length:{}\r\n\
         sentinel_simulate_failure_flags:0\r\n",
        st.masters.len(),
        u8::from(tilt_since.is_some()),
        tilt_since.map_or(-1, |t| t.elapsed().as_secs() as i64),
        running,
        queued,
    );
    let sentinels = super::instance::other_sentinels(sh, st).len() + 1;
    let me = sh.ctx.raft.node_id();
    for (i, m) in st.masters.values().enumerate() {
        let status = if m.is_odown() {
            "odown"
        } else if m.observations.get(&me).is_some_and(|o| o.down) {
            "sdown"
        } else {
            "ok"
        };
        let _ = write!(
            o,
            "master{i}:name={},status={status},address={},slaves={},sentinels={sentinels}\r\n",
            m.name,
            m.addr,
            m.replicas.len(),
        );
    }
}
