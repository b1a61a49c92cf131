"""The malloc tuning is opt-in: nothing on import, applied by the command's flag or the environment."""
import sys

import pytest

from scrapl_graph import allocator


class FakeLibc:
    def __init__(self):
        self.calls = []

        def mallopt(param, value):
            self.calls.append((param, value))
            return 1

        self.mallopt = mallopt


@pytest.fixture
def fake_libc(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(allocator, "_tuned", False)
    monkeypatch.setattr(sys, "platform", "linux")
    return libc


def test_tune_malloc_sets_the_three_thresholds(fake_libc):
    assert allocator.tune_malloc(mmap_threshold=1 << 20, trim_threshold=1 << 30, top_pad=1 << 26)
    assert sorted(fake_libc.calls) == sorted([(-3, 1 << 20), (-1, 1 << 30), (-2, 1 << 26)])
    assert allocator.is_tuned()


def test_only_requested_tuning_is_applied(fake_libc, monkeypatch):
    monkeypatch.delenv(allocator.ENV_VAR, raising=False)
    assert not allocator.tune_malloc_if_requested() and fake_libc.calls == []
    monkeypatch.setenv(allocator.ENV_VAR, "0")
    assert not allocator.tune_malloc_if_requested() and fake_libc.calls == []
    monkeypatch.setenv(allocator.ENV_VAR, "1")
    assert allocator.tune_malloc_if_requested() and len(fake_libc.calls) == 3


def test_the_command_flag_opts_in_for_the_command_and_its_workers(fake_libc, monkeypatch):
    from scrapl_graph.cli import main

    monkeypatch.setenv(allocator.ENV_VAR, "0")  # restored after the test, whatever main() sets
    assert main(["--tune-malloc", "jtfs", "--n", "1024", "--J", "4", "--Q1", "2", "--Q2", "1", "--J_fr", "1",
                 "--Q_fr", "1", "--paths", "1", "--device", "cpu"]) == 0
    assert allocator.requested() and len(fake_libc.calls) == 3


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.tune_malloc() is False
