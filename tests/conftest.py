import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def pytest_sessionstart(session):
    # plainrnn's C++ extension compiles on first use (about a minute, once per machine) and says so on
    # stderr; built here, before any test runs, no test that reads a command's stderr meets that line.
    from plainrnn import native
    native.kernel()
