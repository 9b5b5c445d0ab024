//! The deployment files agree with each other and with the code: every example config loads,
//! the compose file, Kubernetes manifests and systemd unit use the ports, volumes, node ids
//! and config paths the configs name, the Dockerfile builds the binary the tests use, and the
//! alert rules and dashboard only query metrics the nodes export. (No container engine runs
//! here, so these are static checks.)

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use raft_sentinel::config::{Config, Overrides, SecretTarget};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Resolves `<<` merge keys (compose uses them; YAML 1.2 loaders leave them as plain keys).
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = h.get(&Yaml::String("<<".into())) {
                if let Yaml::Hash(b) = merged(base) {
                    out.extend(b);
                }
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn load_config(origin: &str, text: &str, o: &Overrides) -> Config {
    Config::resolve(origin, text, o).unwrap_or_else(|e| panic!("{origin}: {e}"))
}

/// A shipped config starts secured: a cluster secret for the peer port and a credential for the
/// API (both from secret files), and nothing a node would refuse as exposed.
fn assert_secured(what: &str, cfg: &Config) {
    let mut loaded = cfg.clone();
    for (_, _, target) in &cfg.secret_files {
        let v = Some("x".repeat(64));
        match target {
            SecretTarget::Requirepass => loaded.requirepass = v,
            SecretTarget::ApiPassword => loaded.api_password = v,
            SecretTarget::ClusterSecret => loaded.cluster_secret = v,
            SecretTarget::MasterAuthPass(_) | SecretTarget::WebhookSecret(_) => {}
        }
    }
    assert!(
        loaded.cluster_secret.is_some(),
        "{what}: no [security] cluster_secret_file"
    );
    assert!(
        loaded.api_credential().is_some(),
        "{what}: no API credential (api_password_file or requirepass_file)"
    );
    assert!(
        cfg.requirepass.is_none() && cfg.api_password.is_none(),
        "{what}: secrets belong in files, not in the config"
    );
    assert!(!loaded.api_open_reads, "{what}: reads opened by default");
    assert_eq!(loaded.exposed(), Vec::new(), "{what}");
}

/// Names `deploy/gen-secrets.sh FORM` generates.
fn generated_secrets(form: &str) -> Vec<String> {
    let script = read("deploy/gen-secrets.sh");
    let line = script
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{form})")))
        .unwrap_or_else(|| panic!("gen-secrets.sh has no {form} case"));
    line.split("set --")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn secrets_generator_makes_long_random_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let run = || {
        let st = std::process::Command::new(root().join("deploy/gen-secrets.sh"))
            .arg(&out)
            .args(["one", "two"])
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
    };
    run();
    let one = std::fs::read_to_string(out.join("one")).unwrap();
    let two = std::fs::read_to_string(out.join("two")).unwrap();
    assert_eq!(one.trim().len(), 64, "{one}");
    assert!(one.trim().chars().all(|c| c.is_ascii_hexdigit()), "{one}");
    assert_ne!(one, two);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&out.join("one")), 0o600);
    // Running it again keeps what exists (no silent rotation).
    run();
    assert_eq!(std::fs::read_to_string(out.join("one")).unwrap(), one);
    // Nothing generated is ever committed.
    for d in ["deploy/compose/secrets", "deploy/k8s/secrets"] {
        assert!(read(&format!("{d}/.gitignore")).lines().any(|l| l == "*"));
    }
}

fn host_port(s: &str) -> (String, u16) {
    let (h, p) = s.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

#[test]
fn every_example_config_loads() {
    let mut n = 0;
    for dir in ["deploy/config", "deploy/systemd", "deploy/compose"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                load_config(
                    &p.display().to_string(),
                    &std::fs::read_to_string(&p).unwrap(),
                    &Overrides::default(),
                );
                n += 1;
            }
        }
    }
    assert_eq!(
        n, 9,
        "three example configs for each of local, systemd and compose"
    );
}

#[test]
fn compose_file_agrees_with_node_configs() {
    let doc = merged(&yaml_docs("deploy/compose/compose.yaml")[0]);
    let services = doc["services"].as_hash().unwrap();
    let names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let secrets = doc["secrets"].as_hash().unwrap();
    let generated = generated_secrets("compose");
    for (k, v) in secrets {
        let file = v["file"].as_str().unwrap();
        let name = file
            .strip_prefix("./secrets/")
            .expect("compose secrets come from secrets/");
        assert!(
            generated.iter().any(|g| g == name),
            "secret {k:?} file {file} is not made by gen-secrets.sh compose"
        );
    }
    let volumes: BTreeSet<String> = doc["volumes"]
        .as_hash()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let mut ids = BTreeSet::new();
    for i in 1..=3u64 {
        let svc = &services[&Yaml::String(format!("sentinel-{i}"))];
        assert_eq!(
            svc["build"]["dockerfile"].as_str(),
            Some("deploy/docker/Dockerfile")
        );
        assert!(
            svc["healthcheck"]["test"].as_vec().is_some(),
            "sentinel-{i} has a health check"
        );
        let mounts = strs(&svc["volumes"]);
        let cfg_mount = mounts
            .iter()
            .find(|m| m.ends_with(":/etc/raft-sentinel/config.toml:ro"))
            .expect("config mount");
        let cfg_file = cfg_mount.split(':').next().unwrap();
        let cfg = load_config(
            cfg_file,
            &read(&format!(
                "deploy/compose/{}",
                cfg_file.trim_start_matches("./")
            )),
            &Overrides::default(),
        );
        assert_eq!(
            cfg.node_id, i,
            "sentinel-{i} mounts the config of node {}",
            cfg.node_id
        );
        assert_secured(&format!("compose node {i}"), &cfg);
        ids.insert(cfg.node_id);
        let data = mounts
            .iter()
            .find(|m| m.starts_with(&format!("sentinel-{i}:")))
            .expect("data volume");
        assert!(volumes.contains(&format!("sentinel-{i}")));
        assert_eq!(
            Path::new(data.split(':').nth(1).unwrap()),
            cfg.data_dir,
            "data volume mounted at data_dir"
        );
        assert_eq!(
            cfg.listen.announce_ip.as_deref(),
            Some(format!("sentinel-{i}").as_str())
        );
        // Peers are the compose services, on the peer port every node listens on.
        for (id, addr) in &cfg.peers {
            let (h, p) = host_port(addr);
            assert_eq!(h, format!("sentinel-{id}"));
            assert!(names.contains(&h), "peer {h} is a service");
            assert_eq!(p, cfg.listen.peer.port());
        }
        // Published ports map to the ports the node listens on.
        let published: BTreeSet<u16> = strs(&svc["ports"])
            .iter()
            .map(|p| p.split(':').nth(1).unwrap().parse().unwrap())
            .collect();
        for port in [
            cfg.listen.sentinel.port(),
            cfg.listen.grpc.port(),
            cfg.listen.metrics.port(),
        ] {
            assert!(
                published.contains(&port),
                "sentinel-{i} publishes container port {port}"
            );
        }
        // The health check talks to the gRPC port the node listens on, with the credential.
        let hc = strs(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            hc.contains(&format!("127.0.0.1:{}", cfg.listen.grpc.port())),
            "{hc}"
        );
        let api_file = cfg
            .secret_files
            .iter()
            .find(|(_, _, t)| *t == SecretTarget::ApiPassword)
            .map(|(_, p, _)| p.display().to_string())
            .expect("api_password_file");
        assert!(hc.contains(&format!("--password-file {api_file}")), "{hc}");
        // Masters are Redis services of this file; secrets are mounted where the config reads them.
        for m in &cfg.masters {
            assert!(
                names.contains(&m.addr.host),
                "master {} is a service",
                m.addr
            );
        }
        let svc_secrets = strs(&svc["secrets"]);
        for (_, path, _) in &cfg.secret_files {
            let name = path
                .strip_prefix("/run/secrets/")
                .expect("compose secrets live in /run/secrets")
                .to_str()
                .unwrap();
            assert!(
                svc_secrets.iter().any(|s| s == name),
                "sentinel-{i} mounts secret {name}"
            );
            assert!(secrets.contains_key(&Yaml::String(name.into())));
        }
    }
    assert_eq!(ids.len(), 3, "distinct node ids");
    for r in ["redis-2", "redis-3"] {
        let cmd = strs(&services[&Yaml::String(r.into())]["command"]).join(" ");
        assert!(
            cmd.contains("--replicaof redis-1 6379"),
            "{r} replicates from redis-1"
        );
    }
}

#[test]
fn kubernetes_manifests_agree_with_each_other_and_the_config() {
    let mut kinds: BTreeMap<String, Yaml> = BTreeMap::new();
    for f in ["configmap", "service", "statefulset", "pdb"] {
        for d in yaml_docs(&format!("deploy/k8s/{f}.yaml")) {
            let kind = d["kind"].as_str().unwrap().to_string();
            let name = d["metadata"]["name"].as_str().unwrap().to_string();
            kinds.insert(format!("{kind}/{name}"), d);
        }
    }
    let kust = &yaml_docs("deploy/k8s/kustomization.yaml")[0];
    assert_eq!(strs(&kust["resources"]).len(), 4);
    // The Secret is generated from files gen-secrets.sh makes: no example passwords shipped.
    let gen = &kust["secretGenerator"][0];
    assert_eq!(gen["name"].as_str(), Some("raft-sentinel"));
    assert_eq!(
        gen["options"]["disableNameSuffixHash"].as_bool(),
        Some(true)
    );
    let generated = generated_secrets("k8s");
    let secret_keys: BTreeSet<String> = strs(&gen["files"])
        .iter()
        .map(|f| {
            let key = f.strip_prefix("secrets/").expect("files from secrets/");
            assert!(generated.iter().any(|g| g == key), "{key} is not generated");
            key.to_string()
        })
        .collect();
    // The documented cert-manager path issues a certificate valid for every pod's peer name.
    let certs = yaml_docs("deploy/k8s/cert-manager.yaml");
    let node_cert = certs
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some("raft-sentinel-tls"))
        .expect("node certificate");
    let dns = strs(&node_cert["spec"]["dnsNames"]);
    let usages = strs(&node_cert["spec"]["usages"]);
    assert!(usages.iter().any(|u| u == "server auth") && usages.iter().any(|u| u == "client auth"));
    let sts = &kinds["StatefulSet/raft-sentinel"];
    let replicas = sts["spec"]["replicas"].as_i64().unwrap() as usize;
    let svc_name = sts["spec"]["serviceName"].as_str().unwrap();
    let headless = &kinds[&format!("Service/{svc_name}")];
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strs(&c["args"]).join(" ");
    assert!(
        args.contains("--node-id $(( ${HOSTNAME##*-} + 1 ))"),
        "node id from the ordinal: {args}"
    );
    let data_dir = args
        .split("--data-dir ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let cfg_text = kinds["ConfigMap/raft-sentinel"]["data"]["config.toml"]
        .as_str()
        .unwrap();
    // Every ordinal gives a valid config.
    for ordinal in 0..replicas as u64 {
        let o = Overrides {
            node_id: Some(ordinal + 1),
            data_dir: Some(data_dir.into()),
            ..Overrides::default()
        };
        let cfg = load_config("configmap config.toml", cfg_text, &o);
        assert_eq!(cfg.peers.len(), replicas, "one peer per replica");
        for (id, addr) in &cfg.peers {
            assert_eq!(
                host_port(addr),
                (
                    format!("{}-{}.{svc_name}", "raft-sentinel", id - 1),
                    cfg.listen.peer.port()
                )
            );
        }
        let ports: BTreeMap<String, i64> = c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ports["sentinel"], cfg.listen.sentinel.port() as i64);
        assert_eq!(ports["grpc"], cfg.listen.grpc.port() as i64);
        assert_eq!(ports["peer"], cfg.listen.peer.port() as i64);
        assert_eq!(ports["metrics"], cfg.listen.metrics.port() as i64);
        assert_secured("k8s configmap", &cfg);
        for (id, addr) in &cfg.peers {
            let host = host_port(addr).0;
            assert!(dns.contains(&host), "certificate lacks {host} (node {id})");
        }
        // Secrets are mounted where the config reads them, with keys the Secret has.
        let mounts = c["volumeMounts"].as_vec().unwrap();
        let secret_dir = mounts
            .iter()
            .find(|m| m["name"].as_str() == Some("secrets"))
            .unwrap()["mountPath"]
            .as_str()
            .unwrap();
        for (_, path, _) in &cfg.secret_files {
            let key = path
                .strip_prefix(secret_dir)
                .expect("secret under the secrets mount")
                .to_str()
                .unwrap()
                .trim_start_matches('/');
            assert!(secret_keys.contains(key), "Secret has key {key}");
        }
        let data_mount = mounts
            .iter()
            .find(|m| m["name"].as_str() == Some("data"))
            .unwrap();
        assert_eq!(
            Path::new(data_mount["mountPath"].as_str().unwrap()),
            cfg.data_dir
        );
    }
    let claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
        .as_str()
        .unwrap();
    assert_eq!(claim, "data");
    // Probes on the metrics port: /health for liveness, /ready for readiness.
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["port"].as_str(),
        Some("metrics")
    );
    // The disruption budget keeps a Raft majority.
    let pdb = &kinds["PodDisruptionBudget/raft-sentinel"];
    assert_eq!(
        pdb["spec"]["minAvailable"].as_i64(),
        Some((replicas / 2 + 1) as i64)
    );
    // Shutdown grace covers the node's 5 s drain.
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() > 5);
    // Selectors match the pod labels.
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for sel in [
        &sts["spec"]["selector"]["matchLabels"],
        &pdb["spec"]["selector"]["matchLabels"],
        &headless["spec"]["selector"],
    ] {
        for (k, v) in sel.as_hash().unwrap() {
            assert_eq!(&labels[k.as_str().unwrap()], v);
        }
    }
}

#[test]
fn systemd_unit_matches_the_example_configs() {
    let unit = read("deploy/systemd/raft-sentinel@.service");
    let kv: Vec<(String, String)> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let get = |k: &str| {
        kv.iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    let exec = get("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/raft-sentinel run --config /etc/raft-sentinel/%i.toml"),
        "{exec}"
    );
    let stop: u64 = get("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(stop > 5, "TimeoutStopSec must exceed the 5 s drain");
    assert_eq!(get("KillSignal"), "SIGTERM");
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "RestrictAddressFamilies",
        "CapabilityBoundingSet",
        "SystemCallFilter",
        "MemoryDenyWriteExecute",
    ] {
        get(hardening);
    }
    assert_eq!(get("ProtectSystem"), "strict");
    let state = get("StateDirectory");
    for i in 1..=3 {
        let cfg = load_config(
            &format!("{i}.toml"),
            &read(&format!("deploy/systemd/{i}.toml")),
            &Overrides::default(),
        );
        assert_eq!(cfg.node_id, i);
        assert_secured(&format!("systemd {i}.toml"), &cfg);
        // Every secret comes through LoadCredential= into this unit's credentials directory.
        for (key, path, _) in &cfg.secret_files {
            let name = path
                .strip_prefix(format!("/run/credentials/raft-sentinel@{i}.service"))
                .unwrap_or_else(|_| panic!("{key}: {} is not a credential", path.display()))
                .to_str()
                .unwrap();
            assert!(
                kv.iter()
                    .any(|(k, v)| k == "LoadCredential" && v.starts_with(&format!("{name}:"))),
                "LoadCredential={name}: missing"
            );
        }
        // ProtectSystem=strict leaves only the StateDirectory writable: data_dir must be it.
        assert_eq!(
            cfg.data_dir,
            Path::new("/var/lib").join(state.replace("%i", &i.to_string()))
        );
    }
}

#[test]
fn dockerfile_builds_the_binary_the_tests_use() {
    let df = read("deploy/docker/Dockerfile");
    let lines: Vec<&str> = df
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build");
    assert!(lines
        .iter()
        .any(|l| l.contains("cargo build --release --locked --bin raft-sentinel")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("COPY --from=build /src/target/release/raft-sentinel ")));
    assert!(lines.contains(&r#"ENTRYPOINT ["raft-sentinel"]"#));
    // Everything the build reads is copied in.
    let copied: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[1..parts.len() - 1].to_vec()
        })
        .collect();
    for need in ["Cargo.toml", "Cargo.lock", "build.rs", "proto", "src"] {
        assert!(copied.contains(need), "Dockerfile must copy {need}");
    }
    for p in read("build.rs")
        .split('"')
        .filter(|s| s.ends_with(".proto"))
    {
        assert!(
            p.starts_with("proto/") && root().join(p).exists(),
            "build.rs reads {p}"
        );
    }
    // The exposed ports are the defaults the configs use.
    let expose: BTreeSet<u16> = lines
        .iter()
        .filter(|l| l.starts_with("EXPOSE "))
        .flat_map(|l| l[7..].split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    let defaults = [
        raft_sentinel::config::DEFAULT_SENTINEL,
        raft_sentinel::config::DEFAULT_GRPC,
        raft_sentinel::config::DEFAULT_PEER,
        raft_sentinel::config::DEFAULT_METRICS,
    ];
    for d in defaults {
        assert!(expose.contains(&host_port(d).1), "EXPOSE {d}");
    }
}

/// Metric names the code registers, with the suffixes Prometheus adds.
fn exported_metrics() -> BTreeSet<String> {
    let src = read("src/metrics.rs");
    let mut names = BTreeSet::new();
    for marker in [
        "reg.register(",
        "gauge(&mut reg,",
        "gauge(\n            &mut reg,",
        "gauge(reg,",
        "gauge(\n            reg,",
    ] {
        for part in src.split(marker).skip(1) {
            if let Some(name) = part.split('"').nth(1) {
                let base = format!("raft_sentinel_{name}");
                for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
                    names.insert(format!("{base}{suffix}"));
                }
            }
        }
    }
    assert!(
        names.contains("raft_sentinel_raft_term"),
        "metric scan found nothing: {names:?}"
    );
    names
}

#[test]
fn alerts_and_dashboard_query_exported_metrics() {
    let known = exported_metrics();
    let alerts = &yaml_docs("deploy/monitoring/alerts.yaml")[0];
    let rules = alerts["groups"][0]["rules"].as_vec().unwrap();
    assert!(rules.len() >= 8);
    let mut used = BTreeSet::new();
    for r in rules {
        assert!(r["alert"].as_str().is_some() && r["labels"]["severity"].as_str().is_some());
        used.extend(support::referenced_metrics(r["expr"].as_str().unwrap()));
    }
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).unwrap();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            used.extend(support::referenced_metrics(t["expr"].as_str().unwrap()));
        }
    }
    assert!(used.len() >= 10);
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "queries use metrics the nodes do not export: {unknown:?}"
    );
}
