"""Sharing results through a DVC remote: a real SSH server on localhost (OpenSSH's sshd, started here) and a
plain folder. Push after `dvc repro`, clone, pull: nothing is retrained, and what is not pushed (the
Ultralytics exports, cheap to rebuild) is all that `dvc repro` rebuilds."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import changed_stages, copy_repo, dvc_in, require_system, run_in

pytestmark = [pytest.mark.pipeline, pytest.mark.system]

SSHD = Path("/usr/sbin/sshd")
NOT_PUSHED = {"segment_export@lungs"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory):
    """(url prefix, private key) of an sshd listening on 127.0.0.1, accepting only a key made here."""
    require_system(SSHD, "Debian's openssh-server (`apt-get install -y openssh-server`)")
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no",  # pytest's temporary folders are not owned the way sshd wants for real homes
        "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp"]) + "\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"sshd did not start: {server.stderr.read()}")
            time.sleep(0.1)
    yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}", folder / "client_key"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def origin(one_run_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reproduced tiny pipeline (one model, the lungs view), committed: a copy, since this module adds remotes
    and tags to it."""
    return copy_repo(one_run_pipeline, tmp_path_factory.mktemp("origin") / "repo")


def round_trip(origin: Path, clone: Path, remote: str, url: str, keyfile: Path | None = None) -> None:
    dvc_in(origin, "remote", "add", remote, url)
    if keyfile is not None:
        dvc_in(origin, "remote", "modify", "--local", remote, "keyfile", str(keyfile))
    pushed = dvc_in(origin, "push", "-r", remote)
    assert "pushed" in pushed
    run_in(origin, "git", "add", ".dvc/config")
    run_in(origin, "git", "commit", "-qm", f"remote {remote}")

    run_in(clone.parent, "git", "clone", "-q", str(origin), clone.name)
    if keyfile is not None:  # a user's own key stays in the clone's .dvc/config.local, out of git
        dvc_in(clone, "remote", "modify", "--local", remote, "keyfile", str(keyfile))
    # --allow-missing: the outputs marked `push: false` are on no remote; `dvc repro` rebuilds them below.
    dvc_in(clone, "pull", "--allow-missing", "-r", remote)
    # The exports are missing, and so is segment_train's input; once rebuilt, that input hashes as before.
    assert changed_stages(clone) == NOT_PUSHED | {"segment_train"}
    lock = (clone / "dvc.lock").read_text()
    log = dvc_in(clone, "repro")
    assert {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")} == NOT_PUSHED
    assert changed_stages(clone) == set()
    assert (clone / "dvc.lock").read_text() == lock  # the rebuilt exports hash as the pushed run's did
    model = yaml.safe_load(lock)["stages"]["train@resnet18-lungs"]["outs"][0]
    assert (clone / model["path"]).is_file()


def test_round_trip_through_an_ssh_remote(origin, ssh_server, tmp_path):
    prefix, keyfile = ssh_server
    store = tmp_path / "ssh-store"
    round_trip(origin, tmp_path / "clone", "shared", f"{prefix}{store}", keyfile)
    assert any(store.rglob("*")), "nothing arrived on the SSH server"


def test_round_trip_through_a_folder_remote(origin, tmp_path):
    store = tmp_path / "folder-store"
    round_trip(origin, tmp_path / "clone", "folder", str(store))
    assert any(store.rglob("*"))


def test_a_model_is_fetched_by_name_from_the_registry(origin, tmp_path):
    """`dvc artifacts get` fetches one trained model from a repository by its registry name (dvc.yaml
    `artifacts:`), through the repository's remote, without its pipeline or data."""
    store = tmp_path / "registry-store"
    dvc_in(origin, "remote", "add", "registry", str(store))
    dvc_in(origin, "push", "-r", "registry")
    run_in(origin, "git", "add", ".dvc/config")
    run_in(origin, "git", "commit", "-qm", "registry remote")  # the fetch reads the remote from the tagged commit
    # A registered version is a git tag in GTO's form, <name>@v<semver>: what `gto register` writes.
    run_in(origin, "git", "tag", "-a", "resnet18-lungs@v0.1.0", "-m", "Registering resnet18-lungs v0.1.0")
    target = tmp_path / "fetched" / "resnet18.pt"
    target.parent.mkdir()
    dvc_in(tmp_path, "artifacts", "get", str(origin), "resnet18-lungs", "--remote", "registry", "-o", str(target))
    assert target.read_bytes() == (origin / "models" / "lungs" / "resnet18.pt").read_bytes()
