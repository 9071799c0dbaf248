import os
import shutil
import subprocess
import uuid

import pytest

import support


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real tansu broker on 127.0.0.1 with sqlite storage, for the session."""
    tansu = shutil.which("tansu")
    assert tansu, "tansu is not installed: run scripts/test.sh"
    port = support.free_port()
    work = tmp_path_factory.mktemp("tansu")
    log = open(work / "tansu.log", "wb")
    proc = subprocess.Popen(
        [
            tansu, "broker",
            "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
            # tansu reads the sqlite path relative to its working folder.
            "--storage-engine", "sqlite://tansu.db",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    try:
        support.wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def topic():
    # tansu deletes every topic when one is deleted: never delete, always new.
    return f"attempts-{uuid.uuid4().hex[:12]}"
