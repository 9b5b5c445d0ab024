//! A leader cut off from the other coordinators in the middle of a reconfiguration must
//! stop touching Redis before the majority can elect a successor (network namespaces, root
//! needed).
//!
//! Lab: hosts 0-2 run the nodes, host 3 runs three Redis instances. A failover is under way
//! and its reconfiguration keeps re-sending `REPLICAOF` to a replica whose ACL refuses it.
//! The leader is cut off from both followers (it still reaches Redis) just before its next
//! resend is due; the majority elects a new leader that carries on. Redis's own record
//! (`MONITOR`) shows every command and the address it came from.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::netns::{self, NetLab};
use support::wait_for_every;
use support::BIN;

const REDIS: usize = 3;
/// The lab's Raft settings (`NetLab::node_config`): tick 50 ms, 10 election ticks; the lease
/// is 8 ticks.
const LEASE: Duration = Duration::from_millis(400);
const MUTATING: [&str; 8] = [
    "\"multi\"",
    "\"replicaof\"",
    "\"slaveof\"",
    "\"config\" \"set\"",
    "\"config\" \"rewrite\"",
    "\"client\" \"kill\"",
    "\"client\" \"pause\"",
    "\"failover\"",
];

/// A lab redis-server that also has the coordinator's ACL user `coord`.
fn redis_args(ip: &str, port: u16, extra: &[&str], dir: &Path) -> Vec<String> {
    let user = ["--user", "coord", "on", ">pw", "~*", "&*", "+@all"];
    let extra: Vec<&str> = user.iter().chain(extra).copied().collect();
    netns::redis_args(ip, port, &dir.join(port.to_string()), &extra)
}

fn cli(lab: &NetLab, ip: &str, port: u16, args: &[&str]) -> String {
    let out = lab
        .command(REDIS, "redis-cli")
        .args(["-h", ip, "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The values of `key` in redis-cli's plain output of Sentinel maps (a key's line, then its
/// value's).
fn values<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = out.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == key)
        .map(|w| w[1])
        .collect()
}

/// Whether `out` lists `n` instances that answered the node's probes: a run id from `INFO`,
/// neither disconnected nor down.
fn probed(out: &str, n: usize) -> bool {
    let ids = values(out, "runid");
    let flags = values(out, "flags");
    ids.len() == n
        && ids.iter().all(|id| !id.is_empty())
        && flags
            .iter()
            .all(|f| !f.contains("disconnected") && !f.contains("s_down"))
}

/// One `MONITOR` line: (unix time, client ip, command in lower case).
fn parse_monitor(line: &str) -> Option<(f64, String, String)> {
    let (ts, rest) = line.split_once(' ')?;
    let ts: f64 = ts.parse().ok()?;
    let (client, cmd) = rest.strip_prefix('[')?.split_once("] ")?;
    let ip = client
        .split_whitespace()
        .nth(1)?
        .rsplit_once(':')?
        .0
        .to_string();
    Some((ts, ip, cmd.to_lowercase()))
}

fn monitor(lab: &NetLab, ip: &str, port: u16, out: &Path) -> Child {
    let f = std::fs::File::create(out).unwrap();
    lab.command(REDIS, "redis-cli")
        .args(["-h", ip, "-p", &port.to_string(), "MONITOR"])
        .stdout(Stdio::from(f))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn mutating(path: &Path) -> Vec<(f64, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_monitor)
        .filter(|(_, ip, cmd)| {
            ip.starts_with("10.77.0.") && MUTATING.iter().any(|m| cmd.starts_with(m))
        })
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_mid_reconfiguration_sends_nothing_once_its_lease_is_over() {
    assert!(
        NetLab::available(),
        "this test needs network namespaces (run the test suite as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lab = NetLab::new(4);
    let rip = lab.hosts[REDIS].ip.clone();
    let (mp, bestp, otherp) = (6379u16, 6380u16, 6381u16);
    let master = format!("{rip}:{mp}");
    let m_idx = lab.spawn(
        REDIS,
        "redis-server",
        &redis_args(&rip, mp, &[], dir.path()),
        &dir.path().join("m.log"),
    );
    let mp_s = mp.to_string();
    for (port, prio) in [(bestp, "10"), (otherp, "100")] {
        let extra = [
            "--replicaof",
            &rip,
            &mp_s,
            "--masteruser",
            "coord",
            "--masterauth",
            "pw",
            "--replica-priority",
            prio,
        ];
        lab.spawn(
            REDIS,
            "redis-server",
            &redis_args(&rip, port, &extra, dir.path()),
            &dir.path().join(format!("{port}.log")),
        );
    }
    for i in 0..3 {
        let announce = format!("announce_ip = \"{}\"\n", lab.hosts[i].ip);
        let cfg = lab.node_config(
            i,
            dir.path(),
            &master,
            &announce,
            "failover_timeout_ms = 60000\nauth_user = \"coord\"\nauth_pass = \"pw\"\n",
        );
        lab.spawn(
            i,
            BIN,
            &["run".into(), "--config".into(), cfg.display().to_string()],
            &dir.path().join(format!("node{}.log", i + 1)),
        );
    }
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    for ip in &ips[..3] {
        wait_for_every(
            Duration::from_millis(10),
            "every node knows both replicas and has probed them and the master",
            Duration::from_secs(30),
            || {
                let out = cli(&lab, ip, 26379, &["SENTINEL", "REPLICAS", "mymaster"]);
                let master = cli(&lab, ip, 26379, &["SENTINEL", "MASTER", "mymaster"]);
                (out.matches("slave").count() >= 2
                    && out.contains(&bestp.to_string())
                    && probed(&master, 1)
                    && probed(&out, 2)
                    && values(&out, "master-link-status") == ["ok", "ok"])
                .then_some(())
            },
        )
        .await;
    }
    // The reconfiguration can never repoint this replica: it re-sends every 2 s.
    cli(
        &lab,
        &rip,
        otherp,
        &["ACL", "SETUSER", "coord", "-replicaof", "-slaveof"],
    );
    let mon_other = dir.path().join("monitor-other.txt");
    let mon_best = dir.path().join("monitor-best.txt");
    let mut mons = vec![
        monitor(&lab, &rip, otherp, &mon_other),
        monitor(&lab, &rip, bestp, &mon_best),
    ];
    // MONITOR answers OK once it is attached.
    wait_for_every(
        Duration::from_millis(10),
        "both monitors attached",
        Duration::from_secs(5),
        || {
            [&mon_other, &mon_best]
                .iter()
                .all(|f| std::fs::read_to_string(f).is_ok_and(|t| t.starts_with("OK")))
                .then_some(())
        },
    )
    .await;

    lab.kill(m_idx);
    // The first REPLICAOF transaction to the refusing replica: the reconfiguration runs.
    let (first, leader_ip) = wait_for_every(
        Duration::from_millis(10),
        "the reconfiguration's first send",
        Duration::from_secs(20),
        || {
            mutating(&mon_other)
                .into_iter()
                .next()
                .map(|(ts, ip, _)| (ts, ip))
        },
    )
    .await;
    let leader = ips
        .iter()
        .position(|ip| *ip == leader_ip)
        .expect("a coordinator");
    // Cut it off from both followers just before its next resend (2 s after the first).
    let cut_at = first + 1.53;
    let wait = cut_at - unix_now();
    assert!(
        wait > 0.2,
        "the first send was seen too late ({wait:.3} s left)"
    );
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    for j in (0..3).filter(|&j| j != leader) {
        lab.cut(leader, j);
    }
    let cut = unix_now();
    // The old leader's resend falls due ~0.47 s after the cut; the majority elects a new
    // leader after an election timeout and re-sends from there.
    let new_first = wait_for_every(
        Duration::from_millis(10),
        "a new leader's send",
        Duration::from_secs(10),
        || {
            mutating(&mon_other)
                .into_iter()
                .find(|(ts, ip, _)| *ts > cut && *ip != leader_ip)
                .map(|(ts, _, _)| ts)
        },
    )
    .await;
    // A negative window: the old leader's late sends, if any, fall within it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for m in &mut mons {
        let _ = m.kill();
        let _ = m.wait();
    }
    let mut late = Vec::new();
    for path in [&mon_other, &mon_best] {
        late.extend(
            mutating(path)
                .into_iter()
                .filter(|(ts, ip, _)| *ip == leader_ip && *ts > cut),
        );
    }
    let mut report = std::io::stderr();
    let _ =
        writeln!(
        report,
        "cut at {cut:.3}; new leader's first send {:.3} s after; old leader after the cut: {:?}",
        new_first - cut,
        late.iter().map(|(ts, _, c)| (ts - cut, c.clone())).collect::<Vec<_>>()
    );
    for (ts, _, cmd) in &late {
        assert!(
            *ts <= cut + LEASE.as_secs_f64(),
            "the cut-off leader sent {cmd} {:.3} s after losing contact (lease {LEASE:?})",
            ts - cut
        );
        assert!(
            *ts < new_first,
            "the old leader sent {cmd} after the new leader acted"
        );
    }
    assert!(
        new_first - cut > LEASE.as_secs_f64(),
        "a new leader acted within the old lease"
    );
}
