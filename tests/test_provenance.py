"""Provenance: what a run records about the environment it ran in."""

import hashlib
from importlib.metadata import version

from dfkd.provenance import environment_lock


def test_environment_lock_names_every_installed_package_the_lock_pins_differently(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text(
        "version = 1\n"
        '[[package]]\nname = "numpy"\n' + f'version = "{version("numpy")}"\n'
        '[[package]]\nname = "pytest"\nversion = "0.0.1"\n'
        '[[package]]\nname = "pytest"\nversion = "0.0.2"\n'  # a second marker branch
        '[[package]]\nname = "no-such-package"\nversion = "1.0"\n'  # not installed here
        '[[package]]\nname = "dfkd"\nsource = { editable = "." }\n'  # the project: no version
    )
    recorded = environment_lock(lock)
    assert recorded["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert recorded["lock_mismatches"] == [f"pytest {version('pytest')} (locked 0.0.1, 0.0.2)"]


def test_without_a_lock_file_nothing_is_claimed(tmp_path):
    assert environment_lock(tmp_path / "uv.lock") == {"lock_sha256": None, "lock_mismatches": None}
