#!/usr/bin/env python3
"""berth's embedded reverse proxy beside nginx proxying the same upstream, in
the same run, on the same cores:

- throughput and p99 with wrk (keep-alive, 1 KiB body) through each proxy to
  one upstream (an nginx `return 200` of 1 KiB on loopback);
- TLS handshakes per second (ECDSA P-256, a new connection per request);
- idle RSS with 1,000 domains routed, against nginx with the same 1,000
  server blocks;
- time from an API change until the route serves it, against nginx's
  write-file + reload until it serves the change;
- 100 route changes while wrk runs: failed requests (must be none).

Access logs are off on both sides (berth: `[proxy] access_log = false`).
Usage: bench/proxy.py [--seconds 10] [--connections 64] [--routes 1000]
(builds berth in release; installs nginx and wrk if missing; loopback only)
"""
import argparse, json, multiprocessing, os, re, shutil, signal, socket, ssl, subprocess, sys, tempfile, threading, time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_and_login import ROOT, build_berth, children, free_port, pct, request, rss_kib, wait_http  # noqa: E402

PASSWORD = "a sturdy benchmark passphrase"
HOST = "bench.example.com"
BODY = "x" * 1024


def need(binary, package):
    if not shutil.which(binary) and not os.path.exists(f"/usr/sbin/{binary}"):
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, capture_output=True)
    return shutil.which(binary) or f"/usr/sbin/{binary}"


NGINX = need("nginx", "nginx")
WRK = need("wrk", "wrk")
TEMP_PATHS = "client_body_temp_path {d}/t; proxy_temp_path {d}/t; fastcgi_temp_path {d}/t; uwsgi_temp_path {d}/t; scgi_temp_path {d}/t;"


class Nginx:
    """An nginx of our own: its own prefix, pid file and ports."""

    def __init__(self, servers, workers="auto"):
        self.dir = tempfile.mkdtemp(prefix="berth-bench-nginx-")
        os.makedirs(f"{self.dir}/t")
        self.conf = f"{self.dir}/nginx.conf"
        self.servers_file = f"{self.dir}/servers.conf"
        with open(self.servers_file, "w") as f:
            f.write(servers)
        with open(self.conf, "w") as f:
            f.write(f"""worker_processes {workers}; daemon off; pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log; events {{ worker_connections 4096; }}
http {{ access_log off; {TEMP_PATHS.format(d=self.dir)}
  server_names_hash_bucket_size 128; server_names_hash_max_size 8192;
  include {self.servers_file}; }}
""")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rss(self):
        return rss_kib(self.proc.pid) + sum(rss_kib(c) for c in children(self.proc.pid))

    def rewrite(self, servers):
        with open(self.servers_file + ".new", "w") as f:
            f.write(servers)
        os.replace(self.servers_file + ".new", self.servers_file)
        subprocess.run([NGINX, "-p", self.dir, "-c", self.conf, "-s", "reload"], check=True,
                       capture_output=True)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


def proxy_server(listen, upstream_port, extra="", ssl=None, name=HOST, header=None):
    tls = ""
    if ssl:
        tls = f"ssl_certificate {ssl[0]}; ssl_certificate_key {ssl[1]}; ssl_session_cache off; ssl_session_tickets off;"
    add = f'add_header X-Generation "{header}" always;' if header is not None else ""
    return f"""server {{ listen {listen}; server_name {name}; {tls} {add}
  location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host; }} {extra} }}
"""


def upstream_block(port):
    return f"upstream up {{ server 127.0.0.1:{port}; keepalive 256; }}\n"


def wrk(url, seconds, connections):
    cmd = [WRK, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return rps, p99, int(errors.group(1)) if errors else 0, sock.group(1) if sock else ""


def handshakes_worker(port, seconds, counter):
    """Full TLS handshakes (no session reuse) with SNI, one after another."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    end = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < end:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST):
                done += 1
    with counter.get_lock():
        counter.value += done


def handshakes(port, seconds, clients=4):
    """Handshakes per second from `clients` processes (wrk cannot set SNI
    apart from the URL's host, and berth serves no certificate without it)."""
    counter = multiprocessing.Value("i", 0)
    procs = [multiprocessing.Process(target=handshakes_worker, args=(port, seconds, counter))
             for _ in range(clients)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return counter.value / seconds


def p256_cert(directory):
    os.makedirs(directory, exist_ok=True)
    cert, key = f"{directory}/fullchain.pem", f"{directory}/privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST}"], check=True, capture_output=True)
    return cert, key


class Berth:
    def __init__(self, http_port, https_port):
        binary = build_berth()
        self.data = tempfile.mkdtemp(prefix="berth-bench-")
        self.cert = p256_cert(f"{self.data}/certs/{HOST}")
        conf = f"{self.data}/berth.toml"
        with open(conf, "w") as f:
            f.write("[proxy]\naccess_log = false\n")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "serve", "--plain-http", "--config", conf,
             "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data,
             "--proxy-http", f"127.0.0.1:{http_port}", "--proxy-https", f"127.0.0.1:{https_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.port, "/health")
        token = open(os.path.join(self.data, "setup-token")).read().strip()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
        status, body, cookie = request(self.conn, "POST", "/api/v1/setup",
                                       {"token": token, "username": "admin", "password": PASSWORD})
        assert status == 201, (status, body)
        self.headers = {"Cookie": cookie.split(";")[0],
                        "X-CSRF-Token": json.loads(body)["csrf_token"]}

    def api(self, method, path, body=None):
        status, out, _ = request(self.conn, method, path, body, self.headers)
        assert status < 300, (status, out)
        return json.loads(out) if out else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        shutil.rmtree(self.data, ignore_errors=True)


def get_header(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Host": HOST})
    r = c.getresponse()
    r.read()
    return r.getheader(name)


def until_live(port, value, deadline=10):
    end = time.perf_counter() + deadline
    while time.perf_counter() < end:
        if get_header(port, "X-Generation") == value:
            return
    sys.exit(f"change {value} never went live")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--routes", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=30)
    args = ap.parse_args()

    upstream_port = free_port()
    upstream = Nginx(f'server {{ listen 127.0.0.1:{upstream_port}; location / {{ default_type text/plain; return 200 "{BODY}"; }} }}\n', workers=1)
    b_http, b_https, n_http, n_https = free_port(), free_port(), free_port(), free_port()
    berth = Berth(b_http, b_https)
    target = {"kind": "url", "url": f"http://127.0.0.1:{upstream_port}"}
    berth.api("POST", "/api/v1/domains", {"host": HOST, "target": target, "allow_private_upstream": True,
                                           "https_redirect": False})
    servers = upstream_block(upstream_port) + proxy_server(f"127.0.0.1:{n_http}", upstream_port) + \
        proxy_server(f"127.0.0.1:{n_https} ssl", upstream_port, ssl=berth.cert)
    nginx = Nginx(servers)
    try:
        wait_http(upstream_port, "/")
        wait_http(n_http, "/")
        # Warm both up, then measure alternately so neither gets a quieter machine.
        for port in (b_http, n_http):
            wrk(f"http://127.0.0.1:{port}/", 2, args.connections)
        b = wrk(f"http://127.0.0.1:{b_http}/", args.seconds, args.connections)
        n = wrk(f"http://127.0.0.1:{n_http}/", args.seconds, args.connections)
        print(f"HTTP/1.1 keep-alive, {args.connections} connections, 1 KiB body, {args.seconds} s each: "
              f"berth {b[0]:,.0f} req/s p99 {b[1]:.2f} ms (errors {b[2]} {b[3]}); "
              f"nginx {n[0]:,.0f} req/s p99 {n[1]:.2f} ms (errors {n[2]} {n[3]}); "
              f"throughput ratio {b[0] / n[0]:.2f}x, p99 ratio {b[1] / n[1]:.2f}x")

        bt = handshakes(b_https, args.seconds)
        nt = handshakes(n_https, args.seconds)
        print(f"TLS handshakes (ECDSA P-256, TLS 1.3, SNI, no resumption, 4 client processes): "
              f"berth {bt:,.0f}/s; nginx {nt:,.0f}/s; ratio {bt / nt:.2f}x")

        # Time from an API change to the route serving it, against nginx reloads.
        times_b, times_n = [], []
        for i in range(args.changes):
            t0 = time.perf_counter()
            berth.api("PUT", f"/api/v1/domains/{HOST}",
                      {"target": target, "allow_private_upstream": True, "https_redirect": False,
                       "headers": {"X-Generation": str(i)}})
            until_live(b_http, str(i))
            times_b.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            nginx.rewrite(upstream_block(upstream_port) +
                          proxy_server(f"127.0.0.1:{n_http}", upstream_port, header=i))
            until_live(n_http, str(i))
            times_n.append((time.perf_counter() - t0) * 1000)
        print(f"change to live over {args.changes} changes: berth p50 {pct(times_b, 50):.1f} ms, "
              f"p99 {pct(times_b, 99):.1f} ms; nginx write + reload p50 {pct(times_n, 50):.1f} ms, "
              f"p99 {pct(times_n, 99):.1f} ms; ratio p50 {pct(times_b, 50) / pct(times_n, 50):.2f}x")

        # 100 changes while wrk keeps 64 connections busy: nothing may fail.
        result = {}
        load = threading.Thread(target=lambda: result.update(
            run=wrk(f"http://127.0.0.1:{b_http}/", 12, args.connections)))
        load.start()
        time.sleep(1)
        t0 = time.perf_counter()
        for i in range(100):
            berth.api("PUT", f"/api/v1/domains/{HOST}",
                      {"target": target, "allow_private_upstream": True, "https_redirect": False,
                       "headers": {"X-Generation": f"load-{i}"}})
        spent = time.perf_counter() - t0
        load.join()
        rps, _, non2xx, sock = result["run"]
        print(f"100 route changes in {spent:.1f} s under wrk ({rps:,.0f} req/s): "
              f"non-2xx responses {non2xx}, socket errors: {sock or 'none'}")

        # Memory with many routes.
        t0 = time.perf_counter()
        for i in range(args.routes - 1):
            berth.api("POST", "/api/v1/domains",
                      {"host": f"site{i}.example.com", "target": target, "allow_private_upstream": True})
        created = time.perf_counter() - t0
        many = "".join(proxy_server(f"127.0.0.1:{n_http}", upstream_port, name=f"site{i}.example.com")
                       for i in range(args.routes - 1))
        nginx.rewrite(upstream_block(upstream_port) + proxy_server(f"127.0.0.1:{n_http}", upstream_port) + many)
        time.sleep(3)
        for port in (b_http, n_http):
            wait_http(port, "/")
        b_rss, n_rss = rss_kib(berth.proc.pid), nginx.rss()
        print(f"idle RSS with {args.routes} domains: berth {b_rss / 1024:.1f} MiB "
              f"(whole process: panel, API, store); nginx (master + workers) {n_rss / 1024:.1f} MiB; "
              f"ratio {b_rss / n_rss:.2f}x (adding {args.routes - 1} domains took {created:.1f} s)")
    finally:
        nginx.stop()
        berth.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
