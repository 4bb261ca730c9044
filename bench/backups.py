#!/usr/bin/env python3
"""Backups: berth's pipeline beside the guides' raw pipe, in the same run, on
the same PostgreSQL database (a private cluster from Debian's packages on a
loopback port, filled with generate_series to --size-mb on disk):

- throughput: `POST /api/v1/backups/jobs/bench/run` until the run's status
  is no longer `running` (pg_dump -Fc -Z0 → zstd -3 → age → a local file,
  synced and size-checked), against `pg_dump -Fc DB | zstd -3 > FILE` (two
  processes and a pipe) until both have exited. Also, beside them: berth with
  `"encrypt": false`, and `pg_dump -Fc -Z0 | zstd -3` (the same work as
  berth's pipeline without age: pg_dump's own gzip off). Each side runs
  --repeat times, taking turns, and the medians are compared. MiB/s are of
  the uncompressed dump (the bytes berth's pg_dump produced);
- memory: berth's RSS during the encrypted backups (VmRSS sampled every
  50 ms, and VmHWM at the end) against its own idle RSS before the first
  backup, next to the sizes of the dump and of the archive; the pg_dump berth
  runs, and the peer's pg_dump and zstd, for comparison.

Usage: bench/backups.py [--size-mb 1024] [--repeat 3] [--no-build]
(builds berth in release into CARGO_TARGET_DIR, default
~/.cache/berth/bench-target; runs as root: PostgreSQL runs as `postgres`)
"""
import argparse, glob, json, os, shutil, signal, statistics, subprocess, sys, tempfile, threading, time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_and_login import ROOT, free_port, request, rss_kib, wait_http  # noqa: E402

# Not idle_and_login's default: a release build of its own, apart from the
# target directory the tests build into.
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/berth/bench-target"))
PASSWORD = "a sturdy benchmark passphrase"
PG_USER, PG_DB = "bench", "bench"
PG_PASSWORD = os.urandom(16).hex()  # hex needs no escaping in the DSN (and bench/secrets.py shadows the module)
MiB = 1024 * 1024
PG_DUMP = shutil.which("pg_dump") or "/usr/bin/pg_dump"  # the one berth finds on PATH, too


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def child_pids(pid):
    pids = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


class Sampler:
    """VmRSS of a process (and the sum of its children's) every 50 ms."""

    def __init__(self, pid):
        self.pid, self.max_self, self.max_children = pid, 0, 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_flag.is_set():
            self.max_self = max(self.max_self, rss_kib(self.pid))
            self.max_children = max(self.max_children, sum(status_kib(c, "VmRSS") for c in child_pids(self.pid)))
            self.stop_flag.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join()


class Postgres:
    """A private cluster of the newest installed PostgreSQL, on 127.0.0.1."""

    def __init__(self):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                          key=lambda p: int(p.split("/")[-3].split(".")[0]))
        if not versions:
            sys.exit("no PostgreSQL server: apt-get install postgresql")
        self.bin = os.path.dirname(versions[-1])
        self.dir = tempfile.mkdtemp(prefix="berth-bench-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.started = False

    def start(self):
        shutil.chown(self.dir, "postgres", "postgres")
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(PG_PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        self.as_postgres([f"{self.bin}/initdb", "-D", self.data, "-U", PG_USER, f"--pwfile={pwfile}",
                          "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C"])
        os.unlink(pwfile)
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB")
        self.as_postgres([f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"),
                          "-o", options, "-w", "-t", "60", "start"])
        self.started = True
        self.env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
        self.conn = ["-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]

    def as_postgres(self, argv):
        r = subprocess.run(["runuser", "-u", "postgres", "--", *argv], cwd=self.dir,
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{os.path.basename(argv[0])} failed: {r.stderr.strip() or r.stdout.strip()}")

    def sql(self, query, db=PG_DB):
        r = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *self.conn,
                            "-d", db, "-c", query], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def dsn(self):
        return f"postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{PG_DB}"

    def stop(self):
        if self.started:
            subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bin}/pg_ctl", "-D", self.data,
                            "-m", "immediate", "-w", "stop"], cwd=self.dir, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# Orders: an id, short repetitive text, hex text (md5), numbers, timestamps
# and 32 bytes of bytea (half random). Events: log-like lines, very
# compressible. Both filled in batches until the database has its size.
SCHEMA = """
CREATE TABLE orders (id bigint PRIMARY KEY, customer text, status text, note text, amount numeric(12,2),
                     qty integer, ratio double precision, created_at timestamptz, digest bytea);
CREATE TABLE events (id bigint, at timestamptz, kind text, message text);
"""
FILL = """
INSERT INTO orders
SELECT g, 'customer-' || (g % 50000), (ARRAY['new','paid','shipped','returned'])[1 + g % 4],
       md5(g::text) || ' ' || md5((g * 7)::text), round((random() * 1000)::numeric, 2), 1 + g % 17, random(),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '7 seconds',
       decode(md5(random()::text), 'hex') || decode(md5(g::text), 'hex')
FROM generate_series({a}, {b}) g;
INSERT INTO events
SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '13 seconds',
       (ARRAY['view','cart','checkout','login','logout'])[1 + g % 5],
       'user ' || (g % 1000) || ' requested /shop/item/' || (g % 5000) || ' from 10.0.' || (g % 256) || '.'
       || (g % 199) || ' in ' || (g % 300) || ' ms' || repeat(' ok', 1 + g % 8)
FROM generate_series({a}, {a} + ({b} - {a}) / 2) g;
"""


def make_database(pg, size_mb):
    t0 = time.perf_counter()
    subprocess.run([f"{pg.bin}/createdb", *pg.conn, PG_DB], env=pg.env, check=True, capture_output=True)
    pg.sql(SCHEMA)
    target, done, batch = size_mb * MiB, 0, 200_000
    size = int(pg.sql("SELECT pg_database_size(current_database())"))
    base = size
    while size < target:
        pg.sql(FILL.format(a=done + 1, b=done + batch))
        done += batch
        size = int(pg.sql("SELECT pg_database_size(current_database())"))
        per_row = max(1, (size - base) / done)
        batch = int(min(2_000_000, max(50_000, (target - size) / per_row)))
    pg.sql("VACUUM (FREEZE, ANALYZE)")
    pg.sql("CHECKPOINT")
    size = int(pg.sql("SELECT pg_database_size(current_database())"))
    return size, done, time.perf_counter() - t0


class Berth:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="berth-bench-")
        self.proc = None

    def start(self):
        self.port = free_port()
        self.log = open(os.path.join(self.data, "berth.log"), "wb")
        self.proc = subprocess.Popen([os.path.join(TARGET, "release", "berth"), "serve", "--plain-http",
                                      "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.port, "/health")
        token = open(os.path.join(self.data, "setup-token")).read().strip()
        status, body, cookie = self.call("POST", "/api/v1/setup",
                                         {"token": token, "username": "admin", "password": PASSWORD})
        assert status == 201, (status, body)
        self.auth = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": json.loads(body)["csrf_token"]}

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            return request(conn, method, path, body, getattr(self, "auth", None))
        finally:
            conn.close()

    def api(self, method, path, body=None, expect=(200,)):
        status, raw, _ = self.call(method, path, body)
        if status not in expect:
            sys.exit(f"{method} {path}: {status} {raw.decode(errors='replace')}")
        return json.loads(raw) if raw else None

    def make_job(self, name, dsn, encrypt):
        self.api("POST", "/api/v1/backups/jobs",
                 {"name": name, "source": {"kind": "postgres", "dsn": dsn}, "target": {"kind": "local"},
                  "encrypt": encrypt}, expect=(200, 201))

    def backup(self, job):
        """Seconds from the POST until the run is no longer running, and its record."""
        t0 = time.perf_counter()
        run_id = self.api("POST", f"/api/v1/backups/jobs/{job}/run", expect=(202,))["id"]
        while True:
            run = self.api("GET", f"/api/v1/backups/runs/{run_id}")
            if run["status"] != "running":
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        if run["status"] != "succeeded":
            log = "\n  ".join(run.get("log") or [])
            raise RuntimeError(f"berth's run {run_id} of `{job}` ended {run['status']}: {run.get('error')}\n"
                               f"  log:\n  {log}")
        return elapsed, run

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.data, "berth.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def reap(proc):
    """Waits for one child and answers its max RSS in KiB (ru_maxrss of that child alone)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss


def pipe_backup(pg, out, compress_in_pg_dump):
    """`pg_dump -Fc [-Z0] DB | zstd -3 > out`, from the start until both have exited."""
    argv = [PG_DUMP, "-Fc", *([] if compress_in_pg_dump else ["-Z0"]), *pg.conn, PG_DB]
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        dump = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pg.env)
        zstd = subprocess.Popen(["zstd", "-3", "-q", "-c"], stdin=dump.stdout, stdout=f)
        dump.stdout.close()
        dump_rss, zstd_rss = reap(dump), reap(zstd)
    elapsed = time.perf_counter() - t0
    if dump.returncode != 0 or zstd.returncode != 0:
        sys.exit(f"pipe failed: pg_dump {dump.returncode} ({dump.stderr.read().decode().strip()}), "
                 f"zstd {zstd.returncode}")
    dump.stderr.close()
    # What berth's local target does after writing; timed apart, not in the figure.
    t1 = time.perf_counter()
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return elapsed, os.path.getsize(out), dump_rss, zstd_rss, time.perf_counter() - t1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024, help="database size on disk, MiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-build", action="store_true", help="use the release binary already in CARGO_TARGET_DIR")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    pg = berth = None
    peer_dir = tempfile.mkdtemp(prefix="berth-bench-pipe-")
    try:
        if not args.no_build:
            # Built where TARGET points, so the binary run is the one just built.
            subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "berth-server"], cwd=ROOT,
                           env=dict(os.environ, SQLX_OFFLINE="true", CARGO_TARGET_DIR=TARGET), check=True)
        pg = Postgres()
        pg.start()
        version = pg.sql("SHOW server_version", db="postgres")
        db_size, rows, gen_s = make_database(pg, args.size_mb)
        print(f"database: {db_size / MiB:.0f} MiB on disk (PostgreSQL {version.split()[0]}, {rows:,} orders "
              f"+ {rows // 2:,} events, generated in {gen_s:.0f} s)", flush=True)

        berth = Berth()
        berth.start()
        berth.make_job("bench", pg.dsn(), True)
        berth.make_job("bench-plain", pg.dsn(), False)
        time.sleep(2)
        idle = rss_kib(berth.proc.pid)

        times = {k: [] for k in ("berth", "berth-plain", "pipe", "pipe-z0")}
        sizes, fsyncs, pipe_rss = {}, [], {"pg_dump": 0, "zstd": 0}
        source_bytes, rss_max, child_max = 0, 0, 0

        def run_berth():
            nonlocal source_bytes, rss_max, child_max
            with Sampler(berth.proc.pid) as s:
                t, run = berth.backup("bench")
            rss_max, child_max = max(rss_max, s.max_self), max(child_max, s.max_children)
            times["berth"].append(t)
            sizes["berth"], source_bytes = run["size"], run["source_bytes"]

        def run_berth_plain():
            t, run = berth.backup("bench-plain")
            times["berth-plain"].append(t)
            sizes["berth-plain"] = run["size"]

        def run_pipe(key, gzip):
            t, size, d, z, f = pipe_backup(pg, os.path.join(peer_dir, f"{key}.dump.zst"), gzip)
            times[key].append(t)
            sizes[key] = size
            pipe_rss["pg_dump"], pipe_rss["zstd"] = max(pipe_rss["pg_dump"], d), max(pipe_rss["zstd"], z)
            if not gzip:
                fsyncs.append(f)

        order = [("berth", run_berth), ("pipe", lambda: run_pipe("pipe", True)),
                 ("berth-plain", run_berth_plain), ("pipe-z0", lambda: run_pipe("pipe-z0", False))]
        for i in range(args.repeat):
            for key, step in order[i % len(order):] + order[:i % len(order)]:
                step()
                print(f"  round {i + 1}: {key} {times[key][-1]:.1f} s", file=sys.stderr, flush=True)
        hwm = status_kib(berth.proc.pid, "VmHWM")

        med = {k: statistics.median(v) for k, v in times.items()}
        mibs = lambda s: source_bytes / MiB / s  # noqa: E731
        print(f"backup throughput ({db_size / MiB:.0f} MiB database, {source_bytes / MiB:.0f} MiB dump, "
              f"median of {args.repeat}): berth {med['berth']:.1f} s ({mibs(med['berth']):.0f} MiB/s), "
              f"pg_dump -Fc | zstd -3 {med['pipe']:.1f} s ({mibs(med['pipe']):.0f} MiB/s); "
              f"ratio {med['pipe'] / med['berth']:.2f}x (goal >= 0.9)")
        print(f"the same work without gzip or age: berth encrypt=false {med['berth-plain']:.1f} s "
              f"({mibs(med['berth-plain']):.0f} MiB/s), pg_dump -Fc -Z0 | zstd -3 {med['pipe-z0']:.1f} s "
              f"({mibs(med['pipe-z0']):.0f} MiB/s, + {statistics.median(fsyncs):.2f} s to fsync the file); "
              f"ratio {med['pipe-z0'] / med['berth-plain']:.2f}x; "
              f"berth encrypted against it {med['pipe-z0'] / med['berth']:.2f}x")
        print(f"archives: berth {sizes['berth'] / MiB:.1f} MiB (encrypted), {sizes['berth-plain'] / MiB:.1f} MiB "
              f"(encrypt=false); pg_dump -Fc | zstd -3 {sizes['pipe'] / MiB:.1f} MiB; "
              f"pg_dump -Fc -Z0 | zstd -3 {sizes['pipe-z0'] / MiB:.1f} MiB")
        print(f"berth RSS during the backup: max {rss_max / 1024:.1f} MiB (idle {idle / 1024:.1f} MiB, "
              f"{rss_max / idle:.2f}x; VmHWM over the whole run {hwm / 1024:.1f} MiB) while writing a "
              f"{sizes['berth'] / MiB:.0f} MiB archive of a {source_bytes / MiB:.0f} MiB dump; "
              f"the pg_dump it runs max {child_max / 1024:.1f} MiB; "
              f"the pipe's pg_dump max {pipe_rss['pg_dump'] / 1024:.1f} MiB, "
              f"zstd max {pipe_rss['zstd'] / 1024:.1f} MiB")
    except RuntimeError as e:
        sys.exit(str(e))
    except BaseException:
        if berth and berth.log_tail():
            print("berth's log ends:\n" + berth.log_tail(), file=sys.stderr)
        raise
    finally:
        if berth:
            berth.stop()
        if pg:
            pg.stop()
        shutil.rmtree(peer_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
