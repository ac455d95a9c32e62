"""daemon.py: start, watch and stop the convd under test for the Python client tests.

The binary is $CONVD_BIN (default build/convd). It runs with --port 0 on 127.0.0.1; its
stderr is read until `listening on ADDR:PORT`, then drained by a thread into a capped
buffer (so a chatty daemon never blocks on a full pipe, and a failing test can show the
log). stop() sends SIGTERM and waits; anything still alive at exit is killed.
"""
import atexit
import os
import re
import select
import signal
import subprocess
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CONVD_BIN") or os.path.join(TOP, "build", "convd")
_LIVE = set()


def _kill_live():
    for p in list(_LIVE):
        p.kill()
        p.wait()


atexit.register(_kill_live)


def supports(flag):
    """Whether this convd build has a command-line flag (features still landing)."""
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10)
    return flag in out.stdout + out.stderr


class Daemon:
    def __init__(self, *args, port=0, start_timeout=15.0):
        # memory only unless a test passes its own --state-dir (later flags win)
        cmd = [BIN, "--port", str(port), "--bind", "127.0.0.1", "--log-level", "warn",
               "--state-dir=", *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=TOP)
        _LIVE.add(self.proc)
        self._drain = None
        self.log = []
        fd, text = self.proc.stderr.fileno(), b""
        deadline = time.monotonic() + start_timeout
        while not re.search(rb"listening on \S+:\d+\n", text):
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0]
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.stop()
                raise RuntimeError(f"convd did not start: {' '.join(cmd)}\n"
                                   f"{text.decode('utf-8', 'replace')}")
            text += chunk
        m = re.search(rb"listening on (\S+):(\d+)\n", text)
        self.host, self.port = m.group(1).decode(), int(m.group(2))
        self.log.append(text.decode("utf-8", "replace"))
        self.url = f"http://{self.host}:{self.port}"
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self):
        size = 0
        for line in iter(self.proc.stderr.readline, b""):
            if size < 1 << 20:
                self.log.append(line.decode("utf-8", "replace"))
                size += len(line)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def state(self):
        """The process state letter from /proc (R, S, T = stopped, ...)."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def wait(self, timeout):
        """The exit status, or None if still running after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait()
        _LIVE.discard(self.proc)
        if self._drain is not None:
            self._drain.join(5)
            self._drain = None
        if self.proc.stderr and not self.proc.stderr.closed:
            self.proc.stderr.close()
        return self.proc.returncode
