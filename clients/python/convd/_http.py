"""convd._http: one keep-alive HTTP/1.1 connection to the daemon, on the standard library.

`Transport.request` sends one request and returns (status, headers, body bytes). The
connection is reused across requests; before reuse it is probed without blocking, and
one the daemon closed while idle (its keep-alive timeout) is replaced before anything
is sent, so a stale socket never costs a request. A connection that fails during a
request is closed; the request is sent again on a fresh connection only when it is
idempotent (GET, HEAD, PUT, DELETE, PATCH of whole values): a POST that may have reached
the daemon is never repeated. Not thread-safe: use one Transport (one Client) per thread.
"""
import http.client
import select
import socket
import urllib.parse

from .errors import ConnectionFailed

IDEMPOTENT = frozenset(("GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"))


class Transport:
    def __init__(self, url, timeout):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"convd URL must be http:// or https://, not {url!r}")
        self.url = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path.rstrip("/"), "", ""))
        self._https = u.scheme == "https"
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self.timeout = timeout
        self._conn = None
        self.connects = 0  # TCP connections opened so far (keep-alive keeps this at 1)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _fresh(self):
        self.close()
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._conn = cls(self._host, self._port, timeout=self.timeout)
        try:
            self._conn.connect()
        except OSError as e:
            self._conn = None
            raise ConnectionFailed(f"cannot connect to convd at {self.url}: {e} "
                                   f"(is the daemon running? `make run` starts one)") from e
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1
        return self._conn

    def _usable(self):
        """The open connection if the daemon has not closed it meanwhile, else None."""
        c = self._conn
        if c is None or c.sock is None:
            return None
        # readable while idle means EOF (or stray bytes): either way, not reusable
        readable, _, _ = select.select([c.sock], [], [], 0)
        if readable:
            self.close()
            return None
        return c

    def request(self, method, path, body=None, headers=None):
        hdrs = {"Accept": "application/json"}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            conn = self._usable() or self._fresh()
            try:
                conn.request(method, self._prefix + path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt + 1 == attempts:
                    why = "" if method in IDEMPOTENT else (
                        " (a POST is not retried: the daemon may have applied it)")
                    raise ConnectionFailed(f"{method} {path}: the connection to {self.url} "
                                           f"failed: {e!r}{why}") from e
        if resp.will_close:
            self.close()
        return resp.status, resp.headers, data
