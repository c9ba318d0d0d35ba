"""Real services for the tests: a local Ray and an S3-compatible HTTP server (moto) on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """``moto_server`` in its own process; stop() and start() simulate an outage on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto_server did not start on {self.url}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class TcpProxy:
    """A TCP forwarder on 127.0.0.1; stop() cuts every connection (an outage), start() restores service.

    Used to take the S3 server away mid-run without losing its in-memory state.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._server: socket.socket | None = None

    def start(self) -> None:
        import threading

        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._server is not None:
            # shutdown() wakes the blocked accept(); close() alone would leave the port listening.
            try:
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._socks.clear()


class FakeAutoscalingCluster:
    """A Ray head on 127.0.0.1 with Ray's fake multi-node provider: the autoscaler "launches" worker nodes of the
    given types as local raylets with the resources they declare (``GPU`` included), and releases them when idle.

    Ray's own ``ray.cluster_utils.AutoscalingCluster`` runs ``ray stop --force`` (every Ray on the machine, the
    suite's too) and reads an example config that the wheel does not ship; this starts the head in its own session
    on its own ports and stops exactly that session.
    """

    def __init__(self, head_cpus: int, worker_types: dict, *, idle_timeout_minutes: float = 0.1, upscaling_speed: float = 1.0) -> None:
        self.port, self.dashboard = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head_cpus = head_cpus
        self.config = {
            "cluster_name": "hcd-fake",
            "max_workers": sum(t.get("max_workers", 0) for t in worker_types.values()),
            "upscaling_speed": upscaling_speed,
            "idle_timeout_minutes": idle_timeout_minutes,
            # The fake provider connects its nodes to the head's GCS (port 6379 unless told).
            "provider": {
                "type": "fake_multinode",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "gcs_address": self.address,
            },  # fmt: skip
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
                **{name: {"node_config": {}, **t} for name, t in worker_types.items()},
            },
            "head_node_type": "ray.head.default",
            "auth": {},
            "docker": {},
            **{
                k: []
                for k in (
                    "initialization_commands",
                    "setup_commands",
                    "head_setup_commands",
                    "worker_setup_commands",
                    "head_start_ray_commands",
                    "worker_start_ray_commands",
                    "cluster_synced_files",
                    "rsync_exclude",
                    "rsync_filter",
                )
            },  # fmt: skip
            "file_mounts": {},
            "file_mounts_sync_continuously": False,
        }
        self.proc: subprocess.Popen | None = None

    def start(self, workdir: Path, env: dict | None = None) -> None:
        import json
        import os

        cfg = workdir / "fake-cluster.json"
        cfg.write_text(json.dumps(self.config))
        ray_exe = str(Path(sys.executable).parent / "ray")
        full_env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_USAGE_STATS_ENABLED": "0",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}  # fmt: skip
        self.proc = subprocess.Popen(
            [ray_exe, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
             "--num-gpus=0", f"--autoscaling-config={cfg}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={self.dashboard}", f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full_env, start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"fake autoscaling head did not start on {self.address}")

    def stop(self) -> None:
        """SIGTERM then SIGKILL every process of the head's session (its raylets, workers and fake nodes)."""
        import os
        import signal

        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            for pid in session_pids(self.proc.pid):  # Ray's workers sit in process groups of their own
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait
            while time.time() < deadline and session_pids(self.proc.pid):
                time.sleep(0.2)
            if not session_pids(self.proc.pid):
                break
        self.proc.wait(timeout=10)
        self.proc = None


def session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid`` (Linux /proc): Ray's workers sit in their own process groups but stay in
    the session of the driver that started them. A zombie is dead already, only not yet reaped: it is left out."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids
