"""A finished job's `metrics.json` is read back strictly (dfkd/records.py): a record the suite
never writes (NaN, a summary that is not one, a null accuracy, a completed run that stops before
its statistics window) is one line and exit 2 in `dfkd report`, never a number averaged in."""

import json
from pathlib import Path

import pytest

from dfkd.cli import main
from tests.report_fixture import _write_inputs


def _nan_accuracy(record: dict) -> str:
    text = json.dumps(record)
    return text.replace('"final_acc1": ', '"final_acc1": NaN, "was": ', 1)


def _summary_list(record: dict) -> str:
    record["summary"] = []
    return json.dumps(record)


def _null_accuracy(record: dict) -> str:
    record["summary"]["final_acc1"] = None
    return json.dumps(record)


def _stops_before_the_window(record: dict) -> str:
    # "completed", but its history ends at epoch 3 of 8, before the window (epoch 5).
    record["history"] = record["history"][:3]
    record["epochs_completed"] = record["epochs_planned"] = 3
    return json.dumps(record)


def _seed_as_text(record: dict) -> str:
    record["run"]["seed"] = "0"
    return json.dumps(record)


CASES = {
    "NaN": (_nan_accuracy, "holds NaN, which the suite never writes"),
    "a summary that is a list": (_summary_list, "has a 'summary' that is not a mapping"),
    "a null final accuracy": (_null_accuracy, "has no finite 'summary.final_acc1'"),
    "a history before the window": (
        _stops_before_the_window,
        "is completed after 3 epochs, before its statistics window (5)",
    ),
    "a seed that is text": (_seed_as_text, "has a 'run.seed' that is not an integer"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_record_the_suite_never_writes_is_one_line_in_the_report(tmp_path, capsys, case):
    damage, message = CASES[case]
    arguments = _write_inputs(tmp_path)
    victim = Path(arguments[arguments.index("--runs") + 1])
    victim.write_text(damage(json.loads(victim.read_text())))
    out = tmp_path / "reports" / "digits"

    status = main([*arguments, "--out", str(out)])

    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {victim} {message}; delete it and re-run its job"
    ]
    assert not out.parent.exists()


def test_the_fixture_records_themselves_are_read(tmp_path):
    from dfkd.records import read_record

    arguments = _write_inputs(tmp_path)
    runs = arguments[arguments.index("--runs") + 1 : arguments.index("--teachers")]
    assert all(read_record(path, "distillation")["kind"] == "distillation" for path in runs)


def test_infinity_and_invalid_json_are_refused(tmp_path):
    from dfkd.records import RecordError, read_record

    path = tmp_path / "metrics.json"
    path.write_text(
        '{"kind": "teacher", "status": "completed", "summary": {"final_acc1": Infinity}}'
    )
    with pytest.raises(RecordError, match="holds Infinity"):
        read_record(path, "teacher")
    path.write_text('{"kind": ')
    with pytest.raises(RecordError, match="is not valid JSON"):
        read_record(path, "teacher")
