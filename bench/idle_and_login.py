#!/usr/bin/env python3
"""Idle memory and login latency of berth, each beside a peer measured in the
same run:

- idle RSS after start-up, setup and one login, against nginx (one worker) idle
  after one request: the usual panel-less reverse-proxy baseline;
- login latency p50/p99 over N sequential logins on loopback, against the bare
  argon2id verification (same parameters) that every login must pay: the ratio
  is what berth adds on top of the hash.

Usage: bench/idle_and_login.py [--logins N]   (builds berth in release first)
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/berth/target"))
PASSWORD = "a sturdy benchmark passphrase"


def build_berth():
    """Builds berth in release where TARGET points; answers the binary's path
    (the one just built)."""
    env = dict(os.environ, SQLX_OFFLINE="true", CARGO_TARGET_DIR=TARGET)
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "berth-server"],
                   cwd=ROOT, env=env, check=True)
    return os.path.join(TARGET, "release", "berth")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_http(port, path, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"nothing answered on port {port}")


def request(conn, method, path, body=None, headers=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = conn.getresponse()
    return r.status, r.read(), r.getheader("Set-Cookie")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def bench_berth(logins):
    binary = build_berth()
    data = tempfile.mkdtemp(prefix="berth-bench-")
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--plain-http",
                             "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/health")
        token = open(os.path.join(data, "setup-token")).read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        status, _, _ = request(conn, "POST", "/api/v1/setup",
                               {"token": token, "username": "admin", "password": PASSWORD})
        assert status == 201, status
        status, _, _ = request(conn, "POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})
        assert status == 200, status
        time.sleep(2)
        idle = rss_kib(proc.pid)
        times = []
        for _ in range(logins):
            t0 = time.perf_counter()
            status, _, _ = request(conn, "POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})
            times.append((time.perf_counter() - t0) * 1000)
            assert status == 200, status
        return idle, times
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


def bench_nginx():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=True)
    tmp = tempfile.mkdtemp(prefix="berth-bench-nginx-")
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }} }}
""")
    proc = subprocess.Popen([nginx, "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/")
        time.sleep(2)
        return rss_kib(proc.pid) + sum(rss_kib(c) for c in children(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_argon2(n):
    try:
        import argon2
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "argon2-cffi"], check=True)
        import argon2
    ph = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    h = ph.hash(PASSWORD)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ph.verify(h, PASSWORD)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--logins", type=int, default=200)
    args = ap.parse_args()
    idle, logins = bench_berth(args.logins)
    nginx = bench_nginx()
    hashes = bench_argon2(args.logins)
    lp50, lp99 = pct(logins, 50), pct(logins, 99)
    hp50, hp99 = pct(hashes, 50), pct(hashes, 99)
    print(f"idle RSS after start-up + one login: berth {idle / 1024:.1f} MiB; "
          f"nginx (master + 1 worker) {nginx / 1024:.1f} MiB; ratio {idle / nginx:.2f}x")
    print(f"login latency over {len(logins)} logins: p50 {lp50:.1f} ms, p99 {lp99:.1f} ms; "
          f"bare argon2id verify p50 {hp50:.1f} ms, p99 {hp99:.1f} ms; "
          f"ratio p50 {lp50 / hp50:.2f}x, p99 {lp99 / hp99:.2f}x")


if __name__ == "__main__":
    main()
