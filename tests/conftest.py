"""Shared fixtures: the real params files, loaded once per session."""

import pytest

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
