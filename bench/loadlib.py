"""Shared pieces of the client-load benchmarks (bench/client_*.py) and of
tests/compat/bench_sentinel.py: starting Redis, a raft-sentinel cluster and a redis-sentinel
set on loopback, process RSS/CPU from /proc, and raising the open-file limit. Every process
started is stopped by pid by Env.close(). The RESP client and the process helper are chaos's
(chaos/resp.py, chaos/procs.py), one copy for every Python tool of the repository."""
import os, resource, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "chaos"))
from procs import free_port, spawn, stop_all, wait_port  # noqa: E402
from resp import call as resp_call, encode  # noqa: E402

LOOKUP = encode("SENTINEL", "get-master-addr-by-name", "mymaster")


def raise_nofile(want):
    """Raises the soft (and if root, the hard) open-file limit of this process and of the
    servers it starts afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_up(port, what, timeout=30):
    """Exits the benchmark if nothing listens on 127.0.0.1:port within timeout seconds."""
    if not wait_port("127.0.0.1", port, timeout):
        sys.exit(f"{what} on port {port} did not start")


def call(port, *args, timeout=2.0):
    """One command to 127.0.0.1:port on a fresh connection; its reply."""
    return resp_call("127.0.0.1", port, *args, timeout=timeout)


def master_of(port):
    """The (host, port) a Sentinel port answers for mymaster, or None."""
    try:
        r = call(port, "SENTINEL", "get-master-addr-by-name", "mymaster", timeout=0.5)
    except OSError:
        return None
    if not isinstance(r, list) or len(r) != 2:
        return None
    return r[0], int(r[1])


class Env:
    """Processes and a temp dir, all stopped and removed by close()."""

    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []

    def start(self, argv, log):
        """Starts argv, its stderr appended to `log` in the temp dir; a procs.Proc."""
        p = spawn(argv, log, os.path.join(self.tmp, log), stdout=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def redis(self, replica_of=None):
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.tmp, "--dbfilename", f"dump-{port}.rdb"]
        if replica_of:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        p = self.start(argv, f"redis-{port}.log")
        wait_up(port, "redis-server")
        return port, p

    def redis_set(self, replicas=1):
        """A master and its replicas, replication up."""
        m, mp = self.redis()
        rs = [self.redis(replica_of=m) for _ in range(replicas)]
        end = time.time() + 20
        while time.time() < end:
            info = call(m, "INFO", "replication")
            if isinstance(info, str) and f"connected_slaves:{replicas}" in info:
                break
            time.sleep(0.1)
        return m, mp, rs

    def sentinels(self, master, n=3, down_after=1000, extra=""):
        """n redis-sentinel processes monitoring master (quorum n//2+1); their ports, procs."""
        ports, procs = [], []
        for _ in range(n):
            port = free_port()
            d = os.path.join(self.tmp, f"sentinel-{port}")
            os.makedirs(d)
            conf = os.path.join(d, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {d}\n"
                        f"sentinel monitor mymaster 127.0.0.1 {master} {n // 2 + 1}\n"
                        f"sentinel down-after-milliseconds mymaster {down_after}\n"
                        f"sentinel failover-timeout mymaster 10000\n{extra}")
            procs.append(self.start(["redis-sentinel", conf], f"sentinel-{port}.log"))
            ports.append(port)
        for p in ports:
            wait_up(p, "redis-sentinel")
        return ports, procs

    def raft(self, binary, master, n=3, down_after=1000, port_toml=""):
        """n raft-sentinel nodes monitoring master; their Sentinel ports, procs, metrics ports."""
        ids = list(range(1, n + 1))
        ports = {i: {k: free_port() for k in ("sentinel", "grpc", "peer", "metrics")} for i in ids}
        procs = []
        for i in ids:
            d = os.path.join(self.tmp, f"node{i}")
            os.makedirs(d)
            lines = [f"node_id = {i}", f'data_dir = "{d}/data"', "[listen]"]
            lines += [f'{k} = "127.0.0.1:{p}"' for k, p in ports[i].items()]
            for j in ids:
                lines += ["[[peers]]", f"id = {j}", f'addr = "127.0.0.1:{ports[j]["peer"]}"']
            lines += ["[raft]", 'initial_cluster_state = "new"']
            if port_toml:
                lines += ["[sentinel_port]", port_toml]
            lines += ["[[masters]]", 'name = "mymaster"', f'addr = "127.0.0.1:{master}"',
                      f"quorum = {n // 2 + 1}", f"down_after_ms = {down_after}"]
            with open(os.path.join(d, "config.toml"), "w") as f:
                f.write("\n".join(lines) + "\n")
            procs.append(self.start([binary, "run", "--config", os.path.join(d, "config.toml")],
                                    f"node{i}.log"))
        sp = [ports[i]["sentinel"] for i in ids]
        mp = [ports[i]["metrics"] for i in ids]
        end = time.time() + 30
        while time.time() < end and not all(master_of(p) for p in sp):
            time.sleep(0.1)
        if not all(master_of(p) for p in sp):
            sys.exit("raft-sentinel did not answer within 30 s")
        return sp, procs, mp

    def close(self):
        stop_all(self.procs, timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def release_binary(args_bin, build):
    """Builds the release binary unless told not to; its path."""
    if build:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run(["cargo", "build", "--release", "--bin", "raft-sentinel"], cwd=root,
                       check=True)
    if not os.path.exists(args_bin):
        sys.exit(f"{args_bin} not found: cargo build --release (or pass --bin)")
    return args_bin
