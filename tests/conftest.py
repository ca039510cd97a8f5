"""Shared fixtures: the real params files, loaded once per session; the slow tests first."""

import os

import pytest
import torch

from dfkd.config import Suite, load_suite, read_yaml
from tests.support import REPOSITORY


@pytest.fixture(scope="session")
def suite() -> Suite:
    return load_suite(read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`dfkd report`'s outputs on the fixture runs of tests/report_fixture.py."""
    from tests.report_fixture import report_outputs

    return report_outputs(tmp_path_factory.mktemp("report"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end (slow) tests first: with one worker per core, the longest then run while
    the short ones share what is left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each worker on one thread: the workers already use every core.
    torch.set_num_threads(1)
