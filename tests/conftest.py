"""Shared fixtures: the real params files, loaded once per session."""

import pytest

from dfkd.config import Suite, load_suite, read_yaml
from tests.support import REPOSITORY


@pytest.fixture(scope="session")
def suite() -> Suite:
    return load_suite(read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")
