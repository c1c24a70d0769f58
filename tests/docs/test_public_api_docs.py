"""Every public name of plainrnn, plainrnn.path, plainrnn.stiefel and plainrnn.optim documents its
arguments, what it returns (functions), and an example; the examples run with --doctest-modules."""
import inspect

import pytest

import plainrnn
import plainrnn.optim
import plainrnn.path
import plainrnn.stiefel

PUBLIC = [(f"{module.__name__}.{name}", getattr(module, name))
          for module in (plainrnn, plainrnn.path, plainrnn.stiefel, plainrnn.optim) for name in module.__all__
          if callable(getattr(module, name)) and not inspect.ismodule(getattr(module, name))]


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_name_is_documented(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert "Args:" in doc, f"{name}: no Args section"
    assert ">>>" in doc, f"{name}: no example"
    if inspect.isfunction(obj):
        assert "Returns:" in doc, f"{name}: no Returns section"
