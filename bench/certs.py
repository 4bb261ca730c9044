#!/usr/bin/env python3
"""Certificates: berth beside Debian's certbot, in the same run, against the
same pebble (a real ACME CA on loopback):

- issuance time over HTTP-01, from the request until the certificate is
  stored (berth: POST /certificates until the state is `valid` and the proxy
  serves it; certbot: `certbot certonly --standalone` until it exits). The
  first issuance of each registers its ACME account; the rest reuse it.
- memory with 1,000 certificates loaded: berth's RSS after 1,000 uploads
  (each served by SNI), against nginx with the same 1,000 certificates in
  1,000 `ssl` server blocks.

Usage: bench/certs.py [--issuances 5] [--certificates 1000]
(builds berth in release; installs pebble, certbot and nginx if missing)
"""
import argparse, json, os, shutil, signal, socket, ssl, subprocess, sys, tempfile, time
import http.client
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_and_login import ROOT, build_berth, children, free_port, pct, request, rss_kib, wait_http  # noqa: E402
from proxy import Nginx, need  # noqa: E402

PASSWORD = "a sturdy benchmark passphrase"
PEBBLE = need("pebble", "pebble")
CERTBOT = need("certbot", "certbot")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pebble:
    """pebble + pebble-challtestsrv (every name → 127.0.0.1) on loopback."""

    def __init__(self, http_port):
        self.dir = tempfile.mkdtemp(prefix="berth-bench-pebble-")
        self.cert, key = f"{self.dir}/cert.pem", f"{self.dir}/key.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", self.cert, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                # A self-signed leaf, trusted as itself (webpki refuses a CA
                # certificate presented as the server's own).
                "-addext", "basicConstraints=critical,CA:FALSE")
        self.dns = f"127.0.0.1:{free_port()}"
        self.challtest = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", self.dns, "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{free_port()}", "-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        with open(f"{self.dir}/pebble.json", "w") as f:
            json.dump({"pebble": {"listenAddress": f"127.0.0.1:{port}",
                                  "managementListenAddress": f"127.0.0.1:{free_port()}",
                                  "certificate": self.cert, "privateKey": key, "httpPort": http_port,
                                  "tlsPort": free_port(), "ocspResponderURL": "",
                                  "externalAccountBindingRequired": False}}, f)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        self.proc = subprocess.Popen([PEBBLE, "-config", f"{self.dir}/pebble.json", "-dnsserver", self.dns],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"https://127.0.0.1:{port}/dir"
        ctx = ssl.create_default_context(cafile=self.cert)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url, context=ctx, timeout=2)
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("pebble did not start")

    def stop(self):
        for p in (self.proc, self.challtest):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Berth:
    def __init__(self, http_port, https_port, resolver=None):
        binary = build_berth()
        self.data = tempfile.mkdtemp(prefix="berth-bench-")
        conf = f"{self.data}/berth.toml"
        with open(conf, "w") as f:
            f.write("[proxy]\naccess_log = false\n[certificates]\n")
            f.write(f"self_test_port = {http_port}\n")
            if resolver:
                f.write(f'resolver = "{resolver}"\n')
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
        self.headers = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": json.loads(body)["csrf_token"]}

    def api(self, method, path, body=None):
        status, out, _ = request(self.conn, method, path, body, self.headers)
        assert status < 300, (status, out)
        return json.loads(out) if out else None

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        shutil.rmtree(self.data, ignore_errors=True)


def issue_with_berth(berth, host):
    t0 = time.perf_counter()
    cert = berth.api("POST", "/api/v1/certificates", {"domains": [host], "challenge": "http-01"})
    while True:
        c = berth.api("GET", f"/api/v1/certificates/{cert['id']}")
        if c["state"] == "valid" and c["steps"] and c["steps"][-1]["step"] == "install":
            return (time.perf_counter() - t0) * 1000
        if c["state"] == "failed":
            sys.exit(f"berth could not issue {host}: {c['last_error']}")
        time.sleep(0.01)


def issue_with_certbot(work, pebble, http_port, host):
    env = dict(os.environ, REQUESTS_CA_BUNDLE=pebble.cert)
    t0 = time.perf_counter()
    r = subprocess.run([CERTBOT, "certonly", "--standalone", "--http-01-port", str(http_port),
                        "--http-01-address", "127.0.0.1", "-d", host, "--server", pebble.url,
                        "--config-dir", f"{work}/config", "--work-dir", f"{work}/work",
                        "--logs-dir", f"{work}/logs", "--register-unsafely-without-email", "--agree-tos",
                        "-n", "--key-type", "ecdsa"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"certbot could not issue {host}: {r.stderr[-2000:]}")
    return (time.perf_counter() - t0) * 1000


def self_signed(directory, host):
    os.makedirs(directory, exist_ok=True)
    cert, key = f"{directory}/fullchain.pem", f"{directory}/privkey.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "30", "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=DNS:{host}")
    return cert, key


def served_name(port, host):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True) is not None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--issuances", type=int, default=5)
    ap.add_argument("--certificates", type=int, default=1000)
    args = ap.parse_args()

    http_port, https_port = free_port(), free_port()
    pebble = Pebble(http_port)
    work = tempfile.mkdtemp(prefix="berth-bench-certbot-")
    try:
        # berth first (its proxy holds the port pebble validates on), then
        # certbot on the same port, against the same CA process.
        berth = Berth(http_port, https_port, resolver=pebble.dns)
        berth.api("PUT", "/api/v1/acme", {"directory_url": pebble.url, "email": "bench@berth.test",
                                          "extra_roots_pem": open(pebble.cert).read()})
        b_times = []
        for i in range(args.issuances):
            host = f"b{i}.bench.test"
            berth.api("POST", "/api/v1/domains", {"host": host, "auto_certificate": False,
                                                  "target": {"kind": "url", "url": "http://127.0.0.1:9"},
                                                  "allow_private_upstream": True})
            b_times.append(issue_with_berth(berth, host))
        berth.stop()
        c_times = [issue_with_certbot(work, pebble, http_port, f"c{i}.bench.test")
                   for i in range(args.issuances)]
        b_rest, c_rest = b_times[1:] or b_times, c_times[1:] or c_times
        print(f"HTTP-01 issuance against the same pebble, {args.issuances} each: "
              f"berth first {b_times[0]:.0f} ms (registers the account), then p50 {pct(b_rest, 50):.0f} ms; "
              f"certbot first {c_times[0]:.0f} ms, then p50 {pct(c_rest, 50):.0f} ms; "
              f"ratio p50 {pct(b_rest, 50) / pct(c_rest, 50):.2f}x")
    finally:
        pebble.stop()
        shutil.rmtree(work, ignore_errors=True)

    # Memory with N certificates: berth (uploaded, served by SNI) vs nginx.
    n = args.certificates
    pems = tempfile.mkdtemp(prefix="berth-bench-pems-")
    try:
        pairs = [self_signed(f"{pems}/{i}", f"m{i}.bench.test") for i in range(n)]
        berth = Berth(free_port(), free_port())
        base = berth.rss()
        for i, (cert, key) in enumerate(pairs):
            berth.api("POST", "/api/v1/certificates/upload",
                      {"certificate_pem": open(cert).read(), "key_pem": open(key).read()})
        https = int(berth.proc.args[berth.proc.args.index("--proxy-https") + 1].rsplit(":", 1)[1])
        assert served_name(https, f"m{n - 1}.bench.test")
        time.sleep(1)
        b_rss = berth.rss()
        berth.stop()
        port = free_port()
        servers = "".join(
            f"server {{ listen 127.0.0.1:{port} ssl; server_name m{i}.bench.test; "
            f"ssl_certificate {c}; ssl_certificate_key {k}; return 200; }}\n"
            for i, (c, k) in enumerate(pairs))
        nginx = Nginx(servers)
        time.sleep(2)
        assert served_name(port, f"m{n - 1}.bench.test")
        n_rss = nginx.rss()
        nginx.stop()
        print(f"RSS with {n:,} certificates loaded: berth {b_rss / 1024:.1f} MiB "
              f"(empty {base / 1024:.1f} MiB); nginx (master + workers) {n_rss / 1024:.1f} MiB; "
              f"ratio {b_rss / n_rss:.2f}x")
    finally:
        shutil.rmtree(pems, ignore_errors=True)


if __name__ == "__main__":
    main()
