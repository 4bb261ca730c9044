#!/usr/bin/env python3
"""The firewall, each figure beside a peer measured in the same run:

- apply time for R rules (default 1000: one allow from an office /24, R-2
  blocked addresses on TCP 22, one allow for TCP 80,443): POST
  /api/v1/firewall/apply (berth compiles, loads one `nft -j -f -` transaction
  and lists the table back), median of N runs alternating two blocklists so
  every apply changes the table, each one confirmed; against the same rules
  written one nft rule per source address (what UFW- and iptables-style
  tools produce), loaded by `nft -f FILE` as a replace of its own table
  (add, delete, the whole table, in one file). berth is sent the same rules,
  one address per rule;
- the size of both tables for R rules, as `nft list table` prints them:
  lines that are rules, and bytes;
- packets per second the table can judge with 10, 100 and R rules: UDP sent
  from a client namespace over a veth pair to a port with no listener and no
  allow rule, so every packet walks the whole rule list to the default
  `counter drop` (with no reply, conntrack keeps each packet NEW); the
  packets that counter saw, divided by the time sent.

Everything happens in network namespaces this script creates
(`berth-b-<run>-…`, removed at the end): berth gets `--firewall-netns` and
the peer's table is loaded with `ip netns exec`; nft never runs on the host,
and traffic goes only over the namespaces' veth pairs and loopback. berth's
table and the peer's are in different namespace pairs, so one table at a
time is in a packet's path.

Usage: bench/firewall.py [--rounds 5] [--rules 1000] [--seconds 2] [--trials 3]
(builds berth in release, runs as root)
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, uuid
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_and_login import ROOT, build_berth, free_port, request, wait_http  # noqa: E402

PASSWORD = "a sturdy benchmark passphrase"
RUN = uuid.uuid4().hex[:6]
PREFIX = f"berth-b-{RUN}"
# Server and client ends of each pair. The blocklists use 10.1/16 and
# 10.2/16, the allow 198.51.100.0/24: the client is in none of them.
SERVER_IP, CLIENT_IP = "192.168.250.1", "192.168.250.2"
FLOOD_PORT = 9999

# The sender, run inside the client namespace: sendto in a tight loop for
# the given seconds, then how many it sent and how long it took.
SENDER = """
import socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
send, dst, payload = s.sendto, (host, port), b"berth-bench-flood"
sent, start = 0, time.perf_counter()
end = start + seconds
while time.perf_counter() < end:
    for _ in range(256):
        try:
            send(payload, dst)
            sent += 1
        except OSError:
            pass
print(sent, time.perf_counter() - start)
"""


def run(*argv, stdin=None):
    out = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


def nft(ns, *args, stdin=None):
    """nft inside namespace `ns`, and only there."""
    return run("ip", "netns", "exec", ns, "nft", *args, stdin=stdin)


def make_pair(made, tag):
    """A server and a client namespace joined by a veth pair made inside them."""
    server, client = f"{PREFIX}-{tag}s", f"{PREFIX}-{tag}c"
    for ns in (server, client):
        run("ip", "netns", "add", ns)
        made.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", server, "link", "add", "v0", "type", "veth", "peer", "name", "v0", "netns", client)
    for ns, addr in ((server, SERVER_IP), (client, CLIENT_IP)):
        run("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", "v0")
        run("ip", "-n", ns, "link", "set", "v0", "up")
    return server, client


def rules(count, blocklist):
    """`count` rules: an office allowed on SSH, count-2 blocked addresses on
    SSH (blocklist 1 or 2 picks the /16 they come from), the web open."""
    out = [{"action": "allow", "protocol": "tcp", "ports": "22", "sources": ["198.51.100.0/24"],
            "comment": "office"}]
    for i in range(count - 2):
        out.append({"action": "deny", "protocol": "tcp", "ports": "22",
                    "sources": [f"10.{blocklist}.{i // 250}.{i % 250 + 1}/32"], "comment": ""})
    out.append({"action": "allow", "protocol": "tcp", "ports": "80,443", "sources": [], "comment": "web"})
    return out


def naive_table(count, blocklist):
    """The same rules, one nft rule per source, in a file that replaces the
    table in one transaction. The chain before the rules is berth's own
    (same hook, same priority, same statements), so the rules' layout is
    the only difference."""
    lines = []
    for r in rules(count, blocklist):
        verdict = "accept" if r["action"] == "allow" else "drop"
        ports = r["ports"].split(",")
        dport = ports[0] if len(ports) == 1 else "{ " + ", ".join(ports) + " }"
        for src in r["sources"] or [None]:
            saddr = "" if src is None else f"ip saddr {src.removesuffix('/32')} "
            lines.append(f"\t\t{saddr}tcp dport {dport} {verdict}")
    body = "\n".join(lines)
    return f"""table inet naive
delete table inet naive
table inet naive {{
\tchain inbound {{
\t\ttype filter hook prerouting priority -150; policy accept;
\t\tiif "lo" accept
\t\tfib daddr type != local return
\t\tct state established,related accept
\t\ticmp type {{ destination-unreachable, time-exceeded, parameter-problem }} accept
\t\ticmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }} accept
\t\tudp sport 67 udp dport 68 accept
\t\tudp sport 547 udp dport 546 accept
\t\tct state invalid drop
{body}
\t\tcounter drop
\t}}
}}
"""


class Api:
    """berth's API over a fresh connection per request: an apply closes
    older connections, and a confirmation must come over a new one."""

    def __init__(self, port, token):
        self.port, self.auth = port, {"Authorization": f"Bearer {token}"}

    def call(self, method, path, body=None, expect=200):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.connect()
        start = time.perf_counter()
        status, raw, _ = request(conn, method, f"/api/v1{path}", body, self.auth)
        ms = (time.perf_counter() - start) * 1000
        conn.close()
        assert status == expect, (method, path, status, raw[:500])
        return json.loads(raw) if raw else None, ms

    def put(self, rule_list, expect=200):
        return self.call("PUT", "/firewall/rules",
                         {"enabled": True, "mode": "standalone", "rules": rule_list}, expect)

    def put_apply_confirm(self, rule_list):
        """Stores the rules, applies them and confirms; answers the PUT's
        and the apply's milliseconds."""
        _, put_ms = self.put(rule_list)
        pending, apply_ms = self.call("POST", "/firewall/apply", expect=202)
        self.call("POST", "/firewall/confirm", {"apply_id": pending["apply_id"]})
        return put_ms, apply_ms


def load_naive(ns, path):
    start = time.perf_counter()
    run("ip", "netns", "exec", ns, "nft", "-f", path)
    return (time.perf_counter() - start) * 1000


def rule_lines(text):
    """Lines of `nft list table` that are rules: inside a chain, apart from
    its `type … hook …` line."""
    count, in_chain = 0, False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("chain "):
            in_chain = True
        elif in_chain and s == "}":
            in_chain = False
        elif in_chain and s and not s.startswith("type "):
            count += 1
    return count


def set_elements(ns, table):
    listing = json.loads(nft(ns, "-j", "list", "table", "inet", table))["nftables"]
    return sum(len(i["set"].get("elem", [])) for i in listing if "set" in i)


def drop_counter(ns, table):
    """Packets the chain's final `counter drop` has seen."""
    listing = json.loads(nft(ns, "-j", "list", "table", "inet", table))["nftables"]
    for item in listing:
        rule = item.get("rule")
        if rule and rule["chain"] == "inbound":
            kinds = [next(iter(e)) for e in rule["expr"]]
            if kinds == ["counter", "drop"]:
                return rule["expr"][0]["counter"]["packets"]
    raise RuntimeError(f"no `counter drop` in table inet {table} of {ns}")


def flood(server, client, table, seconds):
    """Packets per second judged and dropped by the table, and the share of
    the packets sent that reached the counter."""
    before = drop_counter(server, table)
    out = run("ip", "netns", "exec", client, sys.executable, "-c", SENDER,
              SERVER_IP, str(FLOOD_PORT), str(seconds))
    after = drop_counter(server, table)
    sent, elapsed = out.split()
    dropped = after - before
    return dropped / float(elapsed), dropped, int(sent)


def interrupted(signum, frame):
    """SIGTERM cleans up as Ctrl-C does."""
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the bench makes network namespaces")
    signal.signal(signal.SIGTERM, interrupted)

    binary = build_berth()

    made, proc = [], None
    data = tempfile.mkdtemp(prefix="berth-bench-")
    try:
        b_server, b_client = make_pair(made, "b")
        n_server, n_client = make_pair(made, "n")
        port = free_port()
        proc = subprocess.Popen([binary, "serve", "--plain-http", "--listen", f"127.0.0.1:{port}",
                                 "--firewall-netns", b_server, "--proxy-http", "off",
                                 "--proxy-https", "off", "--data-dir", data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(port, "/health")
        token = open(os.path.join(data, "setup-token")).read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        status, body, cookie = request(conn, "POST", "/api/v1/setup",
                                       {"token": token, "username": "admin", "password": PASSWORD})
        assert status == 201, body
        session = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": json.loads(body)["csrf_token"]}
        status, body, _ = request(conn, "POST", "/api/v1/tokens",
                                  {"name": "bench", "scopes": ["admin"]}, session)
        assert status == 201, body
        conn.close()
        api = Api(port, json.loads(body)["token"])

        # 0. The rules go as the peer has them, one address per rule.
        plain = rules(args.rules, 1)
        size = len(json.dumps({"enabled": True, "mode": "standalone", "rules": plain}))
        print(f"PUT of {args.rules} rules with one address each: {size / 1024:.0f} KiB of JSON")

        # 1. Apply time. One untimed apply each first, so every timed one
        # replaces a full table with the other blocklist.
        files = {}
        for blocklist in (1, 2):
            files[blocklist] = os.path.join(data, f"naive-{blocklist}.nft")
            with open(files[blocklist], "w") as f:
                f.write(naive_table(args.rules, blocklist))
        api.put_apply_confirm(rules(args.rules, 2))
        load_naive(n_server, files[2])
        put_ms, apply_ms, naive_ms = [], [], []
        for i in range(args.rounds):
            blocklist = 1 + i % 2
            p, a = api.put_apply_confirm(rules(args.rules, blocklist))
            put_ms.append(p)
            apply_ms.append(a)
            naive_ms.append(load_naive(n_server, files[blocklist]))
        # Each side really holds the last blocklist it was given.
        last, other = 1 + (args.rounds - 1) % 2, 2 - (args.rounds - 1) % 2
        for ns, table in ((b_server, "berth"), (n_server, "naive")):
            text = nft(ns, "list", "table", "inet", table)
            assert f"10.{last}.0.1 " in text and f"10.{other}.0.1 " not in text, (table, text[:2000])
        b_apply, n_apply = statistics.median(apply_ms), statistics.median(naive_ms)
        print(f"apply {args.rules} rules, median of {args.rounds} (two blocklists in turn, each confirmed): "
              f"berth POST /firewall/apply {b_apply:.1f} ms (PUT before it {statistics.median(put_ms):.1f} ms); "
              f"nft -f with one rule per source {n_apply:.1f} ms; ratio {b_apply / n_apply:.2f}x")

        # Where berth's apply goes: its own table, as the plan shows it,
        # loaded the peer's way in a namespace of its own; and the listing
        # berth reads back after every load (its drift fingerprint).
        lone = f"{PREFIX}-x"
        run("ip", "netns", "add", lone)
        made.append(lone)
        for blocklist in (1, 2):
            api.put(rules(args.rules, blocklist))
            plan, _ = api.call("GET", "/firewall/plan")
            files[blocklist] = os.path.join(data, f"berth-{blocklist}.nft")
            with open(files[blocklist], "w") as f:
                f.write("table inet berth\ndelete table inet berth\n" + plan["ruleset"])
        load_naive(lone, files[2])
        text_ms = [load_naive(lone, files[1 + i % 2]) for i in range(args.rounds)]
        list_ms = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            nft(b_server, "-j", "list", "table", "inet", "berth")
            list_ms.append((time.perf_counter() - start) * 1000)
        b_text_ms, b_list_ms = statistics.median(text_ms), statistics.median(list_ms)
        print(f"where berth's apply goes: its table as text through nft -f {b_text_ms:.1f} ms "
              f"(ratio {b_text_ms / n_apply:.2f}x against one rule per source); reading it back with "
              f"nft -j list {b_list_ms:.1f} ms; the rest (JSON instead of text, SQLite, audit) "
              f"{b_apply - b_text_ms - b_list_ms:.1f} ms")

        # 2. Size of what each loaded.
        b_text = nft(b_server, "list", "table", "inet", "berth")
        n_text = nft(n_server, "list", "table", "inet", "naive")
        b_rules, n_rules = rule_lines(b_text), rule_lines(n_text)
        b_bytes, n_bytes = len(b_text.encode()), len(n_text.encode())
        print(f"ruleset for {args.rules} rules (nft list table): berth {b_rules} rules + "
              f"{set_elements(b_server, 'berth')} set elements, {b_bytes:,} bytes; one rule per source "
              f"{n_rules} rules, {n_bytes:,} bytes; ratio rules {b_rules / n_rules:.3f}x, "
              f"bytes {b_bytes / n_bytes:.2f}x")

        # 3. Packets judged per second as the rules grow. berth and the
        # peer take turns, trial by trial, so a busy moment hits both.
        sizes = sorted({10, 100, args.rules})
        pps = {"berth": {}, "naive": {}}
        shares = []
        for n in sizes:
            api.put_apply_confirm(rules(n, 1))
            path = os.path.join(data, f"naive-flood-{n}.nft")
            with open(path, "w") as f:
                f.write(naive_table(n, 1))
            load_naive(n_server, path)
            runs = {"berth": [], "naive": []}
            for _ in range(args.trials):
                for name, server, client, table in (("berth", b_server, b_client, "berth"),
                                                    ("naive", n_server, n_client, "naive")):
                    rate, dropped, sent = flood(server, client, table, args.seconds)
                    runs[name].append(rate)
                    shares.append(dropped / sent)
            for name in runs:
                pps[name][n] = statistics.median(runs[name])
        # Every packet sent reached the default drop: none was let through
        # as part of a connection, so each one walked the whole list.
        assert min(shares) > 0.9, f"only {min(shares):.0%} of the packets reached the default drop"
        b, n = pps["berth"], pps["naive"]
        lo, hi = sizes[0], sizes[-1]
        print(f"UDP to a closed port, every packet judged to the default drop "
              f"({args.seconds:g} s each, median of {args.trials}; {min(shares):.1%} to "
              f"{max(shares):.1%} of the packets sent reached the drop counter): "
              + "; ".join(f"{k} rules berth {b[k]:,.0f} pps, one rule per source {n[k]:,.0f} pps, "
                          f"ratio {b[k] / n[k]:.2f}x" for k in sizes))
        # What the extra rules add to each packet, sender and stack aside.
        extra = {k: (1 / v[hi] - 1 / v[lo]) * 1e6 for k, v in pps.items()}
        print(f"flatness pps({hi}) / pps({lo}): berth {b[hi] / b[lo]:.2f}x; "
              f"one rule per source {n[hi] / n[lo]:.2f}x "
              f"(time added per packet from {lo} to {hi} rules: berth {extra['berth']:.2f} us, "
              f"one rule per source {extra['naive']:.2f} us)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
