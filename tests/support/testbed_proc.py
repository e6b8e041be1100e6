"""Building blocks of the test bed: free ports, processes in their own groups, waiting, and a PKI.

Everything binds 127.0.0.1.  Each process gets its own session (process group), so stopping it
also stops whatever it started; logs go to one file per process in the test bed's folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One child process in its own process group, its output in `<logdir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[object],
        logdir: Path,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path or Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the whole group, wait, SIGKILL it if it lingers; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text[-lines:])


def wait_until(what: str, check: Callable[[], bool], timeout: float, procs: Sequence[Proc] = ()) -> None:
    """Poll `check` until it is true; fail early, naming the process, when one of `procs` exits."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}; "
                    f"its log ({proc.log_path}):\n{proc.tail()}"
                )
        try:
            if check():
                return
        except Exception as exc:
            last_error = f" (last error: {exc})"
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s{last_error}")


def http_ok(url: str, **kwargs: object) -> Callable[[], bool]:
    def check() -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # verify=False on a component's self-signed certificate
            return requests.get(url, timeout=2, **kwargs).status_code == 200  # type: ignore[arg-type]

    return check


# --- PKI (openssl) ---------------------------------------------------------------------------

_CA_CNF = """[req]
distinguished_name=dn
prompt=no
[dn]
CN=x
[v3_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash
"""

APISERVER_SANS = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
)


def _openssl(pki: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def _ca(pki: Path, name: str) -> None:
    _openssl(
        pki,
        "req",
        "-x509",
        "-config",
        "ca.cnf",
        "-extensions",
        "v3_ca",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "7",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-subj",
        f"/CN={name}",
    )


def _leaf(pki: Path, name: str, ca: str, subject: str, eku: str, san: str = "") -> None:
    _openssl(
        pki,
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
    )
    ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment", f"extendedKeyUsage={eku}"]
    if san:
        ext.append(f"subjectAltName={san}")
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl(
        pki,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-sha256",
        "-days",
        "7",
        "-out",
        f"{name}.crt",
        "-extfile",
        f"{name}.ext",
    )


def make_pki(pki: Path) -> Path:
    """Cluster CA, front-proxy CA, serving and client certificates, and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "ca.cnf").write_text(_CA_CNF)
    _ca(pki, "ca")
    _ca(pki, "front-proxy-ca")
    _leaf(pki, "apiserver", "ca", "/CN=kube-apiserver", "serverAuth", APISERVER_SANS)
    _leaf(pki, "admin", "ca", "/O=system:masters/CN=kubernetes-admin", "clientAuth")
    _leaf(pki, "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth")
    _leaf(
        pki,
        "adapter",
        "ca",
        "/CN=prometheus-adapter",
        "serverAuth",
        "DNS:localhost,DNS:prometheus-adapter.monitoring.svc,IP:127.0.0.1",
    )
    _leaf(pki, "kwok", "ca", "/CN=kwok-kubelet", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    _openssl(pki, "genrsa", "-out", "sa.key", "2048")
    _openssl(pki, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    return pki
