"""One run per run folder: a second run, a --resume or an --overwrite of a folder that a live run holds is
refused naming the holder, and the first run's files stay byte for byte; a stale lock (dead pid) is taken
over with a warning; the lock goes when the run ends, by error or Ctrl-C too."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from compound_fer import cli
from compound_fer.run_lock import LOCK, RunFolderInUse, acquire, locked, read_holder

TINY_YAML = """name: tiny
data: {source: synthetic, image_size: 32, synthetic: {n_subjects: 12, per_subject: 1, seed: 0}}
basic: {epochs: 1}
continual: {methods: [naive], orders: 1, epochs: 1}
fewshot: {enabled: false}
threads: 1
loggers: [csv]
"""
HOLD = ("import sys, time\nfrom compound_fer.run_lock import acquire\nacquire(sys.argv[1], command='the first run')\n"
        "print('held', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def first_run(tmp_path):
    """A run folder with results, its lock held by a live process (the first run, still writing)."""
    out = tmp_path / "out"
    (out / "rows").mkdir(parents=True)
    (out / "rows" / "continual_seed0_naive_order0.json").write_text('{"kind": "continual"}')
    (out / "results.json").write_text('{"rows": []}')
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield out, proc
    finally:
        proc.kill()
        proc.wait()


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_data(monkeypatch):
    import compound_fer.runner.protocol as protocol

    def forbidden(*a, **k):
        raise AssertionError("data was loaded although the run folder is in use")

    monkeypatch.setattr(protocol, "load_dataset", forbidden)


@pytest.mark.parametrize("extra", [[], ["--resume"], ["--overwrite"]])
def test_a_second_run_into_a_folder_in_use_is_refused_and_loses_nothing(tmp_path, first_run, no_data, capsys, extra):
    out, proc = first_run
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    before = snapshot(out)
    assert cli.main(["run", "--config", str(cfg), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"--out {out}: in use by another run (pid {proc.pid} on {socket.gethostname()}, started " in err
    assert ": the first run); wait for it to end or choose another --out" in err and f"delete {out / LOCK}" in err
    assert snapshot(out) == before  # results and the first run's lock, byte for byte


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(first_run, caplog):
    out, proc = first_run
    proc.kill()
    proc.wait()  # reaped: the pid is gone
    with caplog.at_level(logging.WARNING, logger="compound_fer.run_lock"):
        held = acquire(out, command="the second run")
    assert f"{out / LOCK}: taking over the lock of a run that is no longer running (pid {proc.pid}" in caplog.text
    assert read_holder(out)["pid"] == os.getpid() and read_holder(out)["command"] == "the second run"
    held.release()
    assert read_holder(out) is None and (out / "results.json").is_file()


def test_a_reused_pid_is_stale_and_another_host_is_refused(tmp_path, caplog):
    lock = tmp_path / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}
    lock.write_text(json.dumps({**me, "process_start": "1"}))  # this pid, but a process started at another time
    with caplog.at_level(logging.WARNING, logger="compound_fer.run_lock"):
        acquire(tmp_path).release()
    assert "taking over the lock" in caplog.text
    lock.write_text(json.dumps({**me, "host": "elsewhere"}))
    with pytest.raises(RunFolderInUse, match=r"on elsewhere, .*another host: this machine cannot tell whether it"):
        acquire(tmp_path)
    lock.write_text("not json")  # unreadable: nobody can be named as holding it
    acquire(tmp_path).release()
    assert not lock.exists()


def test_the_same_process_cannot_run_twice_into_one_folder(tmp_path):
    held = acquire(tmp_path)
    with pytest.raises(RunFolderInUse, match=f"pid {os.getpid()}"):
        acquire(tmp_path)
    held.release()
    acquire(tmp_path).release()


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_the_lock_is_released_on_return_error_and_ctrl_c(tmp_path, error):
    seen = []

    @locked
    def run(*, out_dir, command=None, fail=None):
        seen.append(read_holder(out_dir)["command"])
        if fail:
            raise fail
        return "done"

    assert run(out_dir=tmp_path / "a", command="cmd") == "done" and seen == ["cmd"]
    assert not (tmp_path / "a" / LOCK).exists()
    with pytest.raises(type(error)):
        run(out_dir=tmp_path / "b", fail=error)
    assert not (tmp_path / "b" / LOCK).exists()


def test_a_lock_taken_over_by_another_run_is_not_released_by_the_first(tmp_path):
    held = acquire(tmp_path)
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "x", "token": "someone else"}))
    held.release()
    assert read_holder(tmp_path)["token"] == "someone else"


def test_ranks_other_than_0_do_not_take_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    held = acquire(tmp_path)  # rank 0 holds it
    assert locked(lambda *, out_dir: "ran")(out_dir=tmp_path) == "ran"
    held.release()

