"""The viewer's server as an attacker or a broken client meets it: a real `unrolled serve` process
on loopback, spoken to with raw sockets (what tests/test_web_api.py's HTTP clients would tidy
up is sent byte for byte here). It listens on 127.0.0.1 only; malformed HTTP, traversal paths,
foreign Host names, lying or oversized bodies, deeply nested JSON and idle connections all get
a 4xx (or a closed connection for bytes that are not HTTP) and never stop it answering the good
clients that run beside them."""
from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from test_reliability_report import report  # noqa: E402
from web_model import c_like, serve_process, tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    (d / "a.c").write_text(c_like(600, seed=2), encoding="utf-8")
    (tmp_path_factory.getbasetemp() / "secret.txt").write_text("not for clients", encoding="utf-8")
    with serve_process(str(tiny_run()), "--text", str(d / "a.c")) as url:
        host, port = url[len("http://"):].rsplit(":", 1)
        yield host, int(port)


def raw(server, data: bytes, timeout: float = 30, half_close: bool = False) -> tuple[int | None, bytes]:
    """Send bytes as they are, read until the server closes; -> (HTTP status, or None if it closed
    without one, body). `half_close` ends our side first: for a request that would make it wait."""
    with socket.create_connection(server, timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before reading it all: read its answer
            pass
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except ConnectionResetError:
            pass
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1."):
        return None, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def get(path: str, host: str = "127.0.0.1", extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode() + extra + b"\r\n"


def post(path: str, body: bytes, headers: bytes | None = None) -> bytes:
    if headers is None:
        headers = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode() + headers + b"\r\n" + body


def answers(server) -> bool:
    status, body = raw(server, get("/api/info"))
    return status == 200 and "checkpoint" in json.loads(body)


# --- where it listens --------------------------------------------------------------------------------
def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the listening TCP sockets on `port`, from /proc/net/tcp{,6} (Linux)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # 0A: LISTEN
                found.append(addr)
    return found


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decides the source, nothing goes out
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_it_listens_on_loopback_only(server):
    host, port = server
    assert host == "127.0.0.1"
    cases = 1
    addresses = _listening_addresses(port)
    if Path("/proc/net/tcp").exists():
        assert addresses == ["0100007F"], addresses  # 127.0.0.1, little-endian hex: nothing else
        cases += 1
    outward = _outward_address()
    if outward is not None:  # from this machine's other address the port is closed
        with pytest.raises(OSError):
            socket.create_connection((outward, port), timeout=5).close()
        cases += 1
    report("server", "binds to loopback by default (address checked, other interface refused)", cases, "127.0.0.1 only")


# --- malformed requests ------------------------------------------------------------------------------
MALFORMED = {
    "not HTTP at all": b"\x00\xff\x16\x03\x01 hello\r\n\r\n",
    "a TLS hello on the plain port": bytes.fromhex("160301002a0100002603035a") + b"\x00" * 40,
    "request line without a version": b"GET /api/info\r\n\r\n",
    "HTTP/9.9": b"GET /api/info HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    "header without a colon": b"GET /api/info HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
    "no Host header": b"GET /api/info HTTP/1.1\r\nConnection: close\r\n\r\n",
    "a 1 MB header": get("/api/info", extra=b"X-Big: " + b"a" * 1_000_000 + b"\r\n"),
    "100,000 headers": get("/api/info", extra=b"".join(b"X-%d: 1\r\n" % i for i in range(100_000))),
    "Content-Length not a number": post("/api/text", b"{}", b"Content-Length: lots\r\n"),
    "negative Content-Length": post("/api/text", b"{}", b"Content-Length: -5\r\n"),
    "two different Content-Lengths": post("/api/text", b"{}", b"Content-Length: 2\r\nContent-Length: 9\r\n"),
    "a body shorter than declared": post("/api/text", b'{"text": "ab', b"Content-Length: 100\r\n"),
    "bad chunked encoding": post("/api/text", b"zz\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked\r\n"),
    "a foreign Host (DNS rebinding)": get("/api/info", host="evil.example"),
    "Host with a foreign port-less name": get("/api/info", host="localhost.evil.example"),
    "absolute-form URL to elsewhere": b"GET http://evil.example/api/info HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "CONNECT method": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    "unknown method": b"BREW /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
}


# The server would wait for the rest of these: the client closing its side ends them.
HALF_CLOSE = {"a body shorter than declared"}
# Odd but readable: the HTTP parser reads these as plain HTTP/1.1, and a right answer is right too.
TOLERATED = {"HTTP/9.9"}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_a_4xx_or_a_closed_connection(server, case):
    status, body = raw(server, MALFORMED[case], half_close=case in HALF_CLOSE)
    if case in TOLERATED and status == 200:
        assert "checkpoint" in json.loads(body)
    else:
        assert status is None or 400 <= status < 500, (status, body[:300])
    assert b"Traceback" not in body
    report("server", "malformed HTTP: " + case, 1, f"{status or 'closed'}; server still answering")


def test_the_server_answers_after_all_of_them(server):
    assert answers(server)


TRAVERSAL = ["/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/etc/passwd",
             "/static/....//....//etc/passwd", "/static/..\\..\\server.py", "/static/%252e%252e/app.py",
             "/static//etc/passwd", "/static/app.js%00.png", "/../../../../etc/passwd",
             "/api/text?id=../../secret.txt", "/api/files/../../secret.txt"]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_raw_traversal_paths_reach_nothing(server, path):
    status, body = raw(server, get(path))
    assert status is not None and 400 <= status < 500, (status, body[:200])
    assert b"root:" not in body and b"not for clients" not in body and b"import " not in body
    report("server", "path traversal sent raw (unnormalised): " + path.split("?")[0][:30], 1, f"{status}, nothing served")


def test_traversal_in_the_file_field(server):
    for name in ("../secret.txt", "../../secret.txt", "/etc/passwd", "a.c/../../secret.txt", "..", "\\..\\secret.txt",
                 "a.c\x00.txt", "%2e%2e/secret.txt"):
        status, body = raw(server, post("/api/text", json.dumps({"file": name}).encode()))
        assert status in (400, 404), (name, status, body[:200])
        assert b"not for clients" not in body
    report("server", "path traversal in the JSON file field", 8, "400/404, nothing read")


# --- sizes -----------------------------------------------------------------------------------------------
def test_size_limits(server):
    """Declared too large: refused before the body is read (the server does not wait for it);
    sent too large in chunks: refused once over the limit; nested too deep: a 400, not a 500."""
    t0 = time.monotonic()
    status, body = raw(server, post("/api/text", b"", b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n"))
    assert status == 413 and time.monotonic() - t0 < 20, (status, body)
    chunk = b"a" * 60_000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    status, body = raw(server, post("/api/text", chunked, b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"))
    assert status == 413, (status, body[:200])
    status, body = raw(server, post("/api/text", json.dumps({"text": "x" * 30_000}).encode()))
    assert status == 413 and b"limit" in body, (status, body[:200])
    deep = b"[" * 50_000 + b"]" * 50_000
    status, body = raw(server, post("/api/text", deep))
    assert status == 400, (status, body[:200])
    status, body = raw(server, post("/api/select", b'{"text": "x", "start": 1e400, "end": NaN}'))
    assert status in (400, 404), (status, body[:200])
    assert answers(server)
    report("server", "request size limits (declared 10 GB, 600 kB chunked, 30k-char text, 50k-deep JSON, NaN)", 5,
           "413 / 400, never a 500")


# --- idle and concurrent clients ---------------------------------------------------------------------------
def test_idle_connections_do_not_block_others(server):
    idle = [socket.create_connection(server, timeout=30) for _ in range(20)]
    try:
        for s in idle[:10]:
            s.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        t0 = time.monotonic()
        assert answers(server) and time.monotonic() - t0 < 20
    finally:
        for s in idle:
            s.close()
    report("server", "20 idle or half-sent connections held open", 20, "other clients still answered")


def test_good_and_bad_clients_at_once(server):
    """64 requests from 16 threads, good and malformed interleaved: each gets its own right answer."""
    _, info = raw(server, get("/api/info"))
    want_info = json.loads(info)
    good = [("info", get("/api/info"))] * 24
    bad = [(name, MALFORMED[name]) for name in list(MALFORMED)[:8]] * 3 + [("traversal", get(TRAVERSAL[0]))] * 8
    jobs = [j for pair in zip(good, bad) for j in pair] + good[len(bad):]

    def call(job):
        name, data = job
        status, body = raw(server, data, half_close=name in HALF_CLOSE)
        if name == "info" or (name in TOLERATED and status == 200):
            return status == 200 and json.loads(body) == want_info
        return status is None or 400 <= status < 500

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, jobs))
    assert all(results), [j[0] for j, ok in zip(jobs, results) if not ok]
    assert answers(server)
    report("server", "concurrent good and malformed clients on loopback (16 threads)", len(jobs), "every answer right")
