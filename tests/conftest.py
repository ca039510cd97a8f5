"""Shared fixtures: the real params files, loaded once per session; the slow tests first."""

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from dfkd.config import Suite, load_suite, read_yaml
from tests import services
from tests.support import REPOSITORY, copy_finished, finished_digits


@pytest.fixture(scope="session")
def suite() -> Suite:
    return load_suite(read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`dfkd report`'s outputs on the fixture runs of tests/report_fixture.py."""
    from tests.report_fixture import report_outputs

    return report_outputs(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="session")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shrunk embedded default after `dvc repro` (tests/support.py), one for all workers:
    read it, or change a `finished_copy`."""
    base = tmp_path_factory.getbasetemp()
    return finished_digits(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@pytest.fixture(scope="session")
def slurm() -> str:
    """This machine's single-node SLURM, started unless it runs (tests/services.py); the name of
    its partition. Skipped only where its Debian packages cannot be installed."""
    reason = services.why_not_installable(services.SLURM_PACKAGES) or services.start_slurm()
    if reason:
        pytest.skip(f"the SLURM test {reason}")
    return services.PARTITION


@pytest.fixture
def finished_copy(finished: Path, tmp_path: Path) -> Path:
    return copy_finished(finished, tmp_path / "repository")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end (slow) tests first: with one worker per core, the longest then run while
    the short ones share what is left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each worker on one thread: the workers already use every core.
    torch.set_num_threads(1)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, once every worker is done
        services.stop_slurm_if_the_tests_started_it()


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A folder served over HTTP on the loopback interface: (folder, base URL).

    torchvision's downloader cannot fetch file:// URLs (its _urlretrieve reads `response.length`,
    which only HTTP responses have), so the archive is served by a real local HTTP server and the
    whole download path (redirect check, transfer, md5 check, extraction) runs unpatched.
    """
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
