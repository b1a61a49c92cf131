"""Fixtures shared by every test module; the shared JTFS configurations live in tests/_configs.py."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Each test runs torch on one CPU thread and restores the previous count.

    The tests use short signals, for which one thread is fastest; several
    threads per process oversubscribe a small or busy machine and make the
    suite many times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run the test in its own empty working directory (for code that writes relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
