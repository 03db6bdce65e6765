"""An S3-compatible server on 127.0.0.1 for the project's DVC remote: moto's standalone server, with authentication on.

`start` launches `moto_server`, creates an IAM user with an access key allowed `s3:*` and the bucket, and returns the
endpoint and credentials; every later request must be signed with that key, so wrong credentials are refused as AWS
would refuse them. The server keeps objects in memory (spilled to temp files): stopping it empties the remote.
MinIO or AWS S3 is the same DVC configuration with another endpoint. Used by `medreg s3 start|stop` and the tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from registry.errors import MedregError

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
BOOTSTRAP_REQUESTS = 3  # create_user, put_user_policy, create_access_key: unsigned; the server checks every later one


@dataclass
class S3Server:
    """A running server: its process, endpoint, bucket and the access key it accepts."""

    pid: int
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def client(self):
        """A boto3 S3 client signed with this server's key."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def env(self) -> dict[str, str]:
        """The environment variables that give DVC (and boto3) this server's credentials."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key, "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MedregError(f"moto_server exited with status {proc.returncode} (port {port} in use?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise MedregError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def start(port: int | None = None, bucket: str = "medreg", log: Path | None = None, timeout: float = 30.0) -> S3Server:
    """Start moto's server on 127.0.0.1 (a free port unless given), create a user, its key and the bucket."""
    import boto3

    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        raise MedregError("moto_server not found: install the pinned environment (`make env`; it brings moto[server])")
    port = port or free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the server outlives this function)
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(BOOTSTRAP_REQUESTS)),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the shell that started it does not stop it; `stop` does
    )
    _wait_for(port, proc, timeout)
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="medreg")
    iam.put_user_policy(UserName="medreg", PolicyName="s3-all", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName="medreg")["AccessKey"]
    server = S3Server(proc.pid, endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"])
    server.client().create_bucket(Bucket=bucket)
    return server


def stop(pid: int, timeout: float = 10.0) -> bool:
    """Stop the server with this pid (SIGTERM, then SIGKILL); False when it was not running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if this process started it
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True
