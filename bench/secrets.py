#!/usr/bin/env python3
"""Secrets, each figure beside a peer measured in the same run:

- redeploy with S secrets (default 200): POST /api/v1/apps/{name}/redeploy
  (berth decrypts every value, creates the new container, stops the old one
  gracefully, starts the new one) against `docker stop && docker rm &&
  docker create --env-file && docker start` of the same image, command and
  environment (the `.env` way of the guides); the command exits on SIGTERM,
  so neither side waits for a stop timeout;
- `berth secrets rotate-key` over N secrets (default 1000, plus the S): new
  data key, every value decrypted and re-encrypted in one transaction, as a
  separate process, against rewriting the same rows in one SQLite
  transaction without any cryptography (what the storage alone costs);
- PUT latency of one secret, and berth's RSS with N secrets stored.

Containers carry the label berth-bench=<run id> and are removed at the end.

Usage: bench/secrets.py [--rounds 10] [--secrets 200] [--stored 1000]
"""
import argparse, json, os, sqlite3, subprocess, sys, tempfile, time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_and_login import ROOT, build_berth, free_port, pct, request, rss_kib, wait_http  # noqa: E402
from apps import IMAGE, PREFIX, RUN, cleanup, import_image, summary, timed  # noqa: E402

PASSWORD = "a sturdy benchmark passphrase"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--secrets", type=int, default=200)
    ap.add_argument("--stored", type=int, default=1000)
    args = ap.parse_args()

    binary = build_berth()
    import_image()
    data = tempfile.mkdtemp(prefix="berth-bench-")
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--plain-http", "--listen", f"127.0.0.1:{port}",
                             "--proxy-http", "off", "--proxy-https", "off", "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/health")
        token = open(os.path.join(data, "setup-token")).read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        status, body, cookie = request(conn, "POST", "/api/v1/setup",
                                       {"token": token, "username": "admin", "password": PASSWORD})
        assert status == 201, body
        auth = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": json.loads(body)["csrf_token"]}

        # S secrets of 64 bytes each, the same for both sides.
        values = {f"SECRET_{i:04d}": os.urandom(32).hex() for i in range(args.secrets)}
        app = f"{PREFIX}-secrets"
        command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        s, b, _ = request(conn, "POST", "/api/v1/apps",
                          {"name": app, "image": IMAGE, "command": command,
                           "restart": "no", "labels": {"berth-bench": RUN}}, auth)
        assert s == 201, b
        dotenv = "".join(f"{k}={v}\n" for k, v in values.items())
        s, b, _ = request(conn, "POST", f"/api/v1/apps/{app}/secrets/import", {"dotenv": dotenv}, auth)
        assert s == 200, b
        env_file = os.path.join(data, "bench.env")
        with open(env_file, "w") as f:
            f.write(dotenv)
        peer = f"{PREFIX}-envfile"

        berth_ms, docker_ms = [], []
        for _ in range(args.rounds):
            def via_berth():
                s, b, _ = request(conn, "POST", f"/api/v1/apps/{app}/redeploy", None, auth)
                assert s == 200 and json.loads(b)["status"] == "running", b
            berth_ms.append(timed(via_berth))

            def via_docker():
                subprocess.run(["docker", "stop", peer], capture_output=True)
                subprocess.run(["docker", "rm", peer], capture_output=True)
                subprocess.run(["docker", "create", "--name", peer, "--label", f"berth-bench={RUN}",
                                "--env-file", env_file, IMAGE, *command],
                               check=True, capture_output=True)
                subprocess.run(["docker", "start", peer], check=True, capture_output=True)
            docker_ms.append(timed(via_docker))
        # Both containers really have every value.
        inspected = json.loads(subprocess.run(["docker", "inspect", app], capture_output=True,
                                              check=True).stdout)[0]["Config"]["Env"]
        assert sum(1 for e in inspected if e.startswith("SECRET_")) == args.secrets
        print(f"redeploy with {args.secrets} secrets over {args.rounds} rounds: berth {summary(berth_ms)}; "
              f"docker stop + rm + create --env-file + start {summary(docker_ms)}; "
              f"ratio p50 {pct(berth_ms, 50) / pct(docker_ms, 50):.2f}x")

        # N more secrets in a group, one PUT each.
        s, b, _ = request(conn, "POST", "/api/v1/secret-groups", {"name": "bench"}, auth)
        assert s == 201, b
        put_ms = []
        for i in range(args.stored):
            def put():
                s, b, _ = request(conn, "PUT", f"/api/v1/secret-groups/bench/secrets/KEY_{i:05d}",
                                  {"value": os.urandom(24).hex()}, auth)
                assert s == 200, b
            put_ms.append(timed(put))
        print(f"PUT one secret ({args.stored} in a row): {summary(put_ms)}; "
              f"berth RSS with {args.stored + args.secrets} secrets: {rss_kib(proc.pid) / 1024:.1f} MiB")

        total = args.stored + args.secrets
        start = time.perf_counter()
        out = subprocess.run([binary, "secrets", "rotate-key", "--data-dir", data],
                             capture_output=True, text=True, env=dict(os.environ, BERTH_LOG="warn"))
        rotate_ms = (time.perf_counter() - start) * 1000
        assert out.returncode == 0 and f"Re-encrypted {total} secret(s)" in out.stdout, out

        def rewrite():
            db = sqlite3.connect(os.path.join(data, "berth.db"), timeout=10)
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT scope, owner, name, sealed FROM secrets").fetchall()
            for scope, owner, name, sealed in rows:
                db.execute("UPDATE secrets SET sealed = ? WHERE scope = ? AND owner = ? AND name = ?",
                           (sealed, scope, owner, name))
            db.execute("COMMIT")
            db.close()
            assert len(rows) == total
        plain_ms = timed(rewrite)
        print(f"rotate-key over {total} secrets: berth {rotate_ms:.0f} ms (a separate process: start, "
              f"decrypt, re-encrypt, commit); the same rows rewritten without cryptography "
              f"{plain_ms:.0f} ms; ratio {rotate_ms / plain_ms:.2f}x")
        # The values survived: berth redeploys with them.
        s, b, _ = request(conn, "POST", f"/api/v1/apps/{app}/redeploy", None, auth)
        assert s == 200, b
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["docker", "rm", "-f", f"{PREFIX}-envfile"], capture_output=True)
        cleanup()


if __name__ == "__main__":
    main()
