#!/usr/bin/env python3
"""Apps over the Docker engine, each figure beside a peer measured in the same
run:

- apply latency: POST /api/v1/apps until the answer says the container runs,
  against `docker create && docker start` of the same image and command
  (the docker CLI, as an admin would type it);
- list latency with N containers known (default 1000): GET /api/v1/apps and
  GET /api/v1/containers, against `docker ps -a` over the same containers;
- berth's RSS with N apps known, against its RSS before they existed.

Every container carries the label berth-bench=<run id> and is removed at the
end, with the image this script imports (busybox from Debian's busybox-static).

Usage: bench/apps.py [--rounds 20] [--containers 1000]   (builds berth in release)
"""
import argparse, io, json, os, statistics, subprocess, sys, tarfile, tempfile, time, uuid
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_and_login import ROOT, build_berth, free_port, pct, request, rss_kib, wait_http  # noqa: E402

PASSWORD = "a sturdy benchmark passphrase"
RUN = uuid.uuid4().hex[:8]
IMAGE = f"berth-bench-{RUN}:1"
PREFIX = f"bb{RUN}"


def import_image():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ["sh", "sleep"]:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    repo, tag = IMAGE.split(":")
    subprocess.run(["docker", "import", "-c", f"LABEL berth-bench={RUN}", "-", IMAGE],
                   input=buf.getvalue(), check=True, capture_output=True)


def cleanup():
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=berth-bench={RUN}"],
                         capture_output=True, text=True).stdout.split()
    for i in range(0, len(ids), 200):
        subprocess.run(["docker", "rm", "-f", *ids[i:i + 200]], capture_output=True)
    subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True)


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def summary(values):
    return f"p50 {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--containers", type=int, default=1000)
    args = ap.parse_args()

    binary = build_berth()
    import_image()
    data = tempfile.mkdtemp(prefix="berth-bench-")
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--plain-http",
                             "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/health")
        token = open(os.path.join(data, "setup-token")).read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        status, body, cookie = request(conn, "POST", "/api/v1/setup",
                                       {"token": token, "username": "admin", "password": PASSWORD})
        assert status == 201, body
        auth = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": json.loads(body)["csrf_token"]}

        def spec(name, state="running"):
            return {"name": name, "image": IMAGE, "command": ["sleep", "3600"], "state": state,
                    "restart": "no", "labels": {"berth-bench": RUN}}

        # Apply latency, alternating berth and the docker CLI.
        berth_ms, docker_ms = [], []
        for i in range(args.rounds):
            def via_berth():
                s, b, _ = request(conn, "POST", "/api/v1/apps", spec(f"{PREFIX}-a{i}"), auth)
                assert s == 201 and json.loads(b)["status"] == "running", b
            berth_ms.append(timed(via_berth))

            def via_docker():
                name = f"{PREFIX}-d{i}"
                subprocess.run(["docker", "create", "--name", name, "--label", f"berth-bench={RUN}",
                                IMAGE, "sleep", "3600"], check=True, capture_output=True)
                subprocess.run(["docker", "start", name], check=True, capture_output=True)
            docker_ms.append(timed(via_docker))
        print(f"apply (POST /apps until running) over {args.rounds} rounds: berth {summary(berth_ms)}; "
              f"docker create && docker start {summary(docker_ms)}; "
              f"ratio p50 {pct(berth_ms, 50) / pct(docker_ms, 50):.2f}x")

        # Stop the running ones so N idle containers stay cheap.
        for i in range(args.rounds):
            request(conn, "POST", f"/api/v1/apps/{PREFIX}-a{i}/stop", None, auth)
        subprocess.run(["docker", "stop", "-t", "0", *[f"{PREFIX}-d{i}" for i in range(args.rounds)]],
                       capture_output=True)

        idle_rss = rss_kib(proc.pid)
        known = args.rounds * 2
        start = time.time()
        for i in range(args.containers - known):
            s, b, _ = request(conn, "POST", "/api/v1/apps", spec(f"{PREFIX}-n{i}", "stopped"), auth)
            assert s == 201, b
        print(f"created {args.containers - known} more stopped apps in {time.time() - start:.0f} s "
              f"({args.containers} containers in all)")

        def time_get(path, n=30):
            out = []
            for _ in range(n):
                def get():
                    s, b, _ = request(conn, "GET", path, None, auth)
                    assert s == 200, b
                out.append(timed(get))
            return out
        apps_ms = time_get("/api/v1/apps")
        containers_ms = time_get("/api/v1/containers")
        ps_ms = [timed(lambda: subprocess.run(["docker", "ps", "-a", "--filter", f"label=berth-bench={RUN}"],
                                              check=True, capture_output=True)) for _ in range(10)]
        print(f"list with {args.containers} containers: GET /apps {summary(apps_ms)}; "
              f"GET /containers {summary(containers_ms)}; docker ps -a {summary(ps_ms)}; "
              f"ratio p50 /apps {pct(apps_ms, 50) / pct(ps_ms, 50):.2f}x, "
              f"/containers {pct(containers_ms, 50) / pct(ps_ms, 50):.2f}x")
        full_rss = rss_kib(proc.pid)
        print(f"berth RSS: {idle_rss / 1024:.1f} MiB with {known // 2} apps; "
              f"{full_rss / 1024:.1f} MiB with {args.containers - known // 2} apps known; "
              f"ratio {full_rss / idle_rss:.2f}x")
    finally:
        proc.terminate()
        proc.wait()
        cleanup()


if __name__ == "__main__":
    main()
