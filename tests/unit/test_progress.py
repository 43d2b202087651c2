"""Long first-use steps keep saying that they are still going, and a library's own prints stay out."""

from __future__ import annotations

import logging
import sys
import time

import pytest

from lookalike.embed import progress


def test_a_long_step_says_it_is_still_going_until_it_is_done(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lookalike.embed.runtimes"):
        with progress.step("exporting the text tower to ONNX", every_s=0.05):
            time.sleep(0.4)
        time.sleep(0.2)  # nothing more once it is done
    lines = [r.getMessage() for r in caplog.records if r.name == "lookalike.embed.runtimes"]
    assert lines[0] == "exporting the text tower to ONNX …"
    assert lines[-1].startswith("exporting the text tower to ONNX: done in ")
    beats = [line for line in lines if line.startswith("… exporting the text tower to ONNX (")]
    assert 3 <= len(beats) <= 9
    stamps = [r.created for r in caplog.records if r.name == "lookalike.embed.runtimes"]
    assert max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) < 0.3


def test_a_quiet_step_says_nothing_unless_it_lasts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lookalike.embed.runtimes"):
        with progress.step("loading the model", every_s=0.5, quiet=True):
            pass
        assert caplog.records == []
        with progress.step("loading the model", every_s=0.05, quiet=True):
            time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("… loading the model (") and lines[-1].startswith("loading the model: done in")


def test_only_the_innermost_step_keeps_talking(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="lookalike.embed.runtimes"),
        progress.step("loading the model", every_s=0.05, quiet=True),
        progress.step("exporting", every_s=0.05),  # nested, as the export inside a load
    ):
        time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("… exporting (") for line in lines) >= 3
    # From the inner step's first note to its end it is the innermost, and the outer one is silent (the
    # outer may speak in the instants before the inner registers or after it ends: it is then innermost).
    first = next(i for i, line in enumerate(lines) if line.startswith("… exporting ("))
    done = next(i for i, line in enumerate(lines) if line.startswith("exporting: done"))
    assert not any(line.startswith("… loading the model") for line in lines[first:done]), lines


def test_a_failing_step_stops_its_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lookalike.embed.runtimes"):
        with pytest.raises(RuntimeError), progress.step("quantising", every_s=0.05):
            raise RuntimeError("the exporter failed")
        count = len(caplog.records)
        time.sleep(0.2)
        assert len(caplog.records) == count


def test_only_the_notes_reach_stderr_while_a_library_prints(capsys: pytest.CaptureFixture[str]) -> None:
    class Stderr(logging.Handler):
        """Writes to whatever ``sys.stderr`` is when it emits, as the CLI's notes do."""

        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(record.getMessage() + "\n")

    handler = Stderr()
    progress.log.addHandler(handler)
    try:
        with progress.only_notes_on_stderr(), progress.step("exporting", every_s=0.05):
            print("a page of the exporter's graph", file=sys.stderr)
            time.sleep(0.2)
    finally:
        progress.log.removeHandler(handler)
    err = capsys.readouterr().err
    assert "a page of the exporter's graph" not in err
    assert "exporting …\n" in err and "… exporting (0 s)" in err and "exporting: done in " in err


def test_library_logs_are_dropped_and_lookalikes_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        with progress.quiet_libraries():
            logging.getLogger("onnxruntime.quantization").warning("pages of calibration notes")
            logging.warning("a root-logger note from the quantiser")
            progress.log.warning("calibrating …")
        logging.getLogger("onnxruntime.quantization").warning("after the step")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["calibrating …", "after the step"]
