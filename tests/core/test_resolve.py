"""Which function a call names (_resolve.FunctionTable): enabled modules only, no reach
through an enabled module into one it imports, clear errors for the rest."""

from __future__ import annotations

import pytest

from notebook_actors import ModuleNotExposed
from notebook_actors._resolve import FunctionTable
from notebook_actors.msg import ActorConfig


def table(*modules: str) -> FunctionTable:
    return FunctionTable(ActorConfig(name="t", enable_modules=list(modules)), ("t", "uid"))


def test_enabled_module_function_is_found_including_dotted_names():
    """Test that a function of an enabled module, and a method reached by a dotted
    name inside it, resolve to the objects themselves."""
    import json

    assert table("json").lookup("json", "dumps") is json.dumps
    assert table("json").lookup("json", "JSONDecoder.decode") is json.JSONDecoder.decode


def test_module_not_enabled_is_refused_with_the_fix():
    """Test that a module outside enable_modules raises ModuleNotExposed naming the
    enable_modules argument that would allow it."""
    with pytest.raises(ModuleNotExposed) as info:
        table("json").lookup("os", "getcwd")
    assert "enable_modules=['os']" in str(info.value)


def test_reaching_through_an_enabled_module_into_another_is_refused():
    """Test that `json.decoder:scanner.make_scanner` (json.decoder imports the module
    json.scanner) does not reach json.scanner, which is not enabled."""
    with pytest.raises(ModuleNotExposed, match=r"reaches into module 'json\.scanner'"):
        table("json.decoder").lookup("json.decoder", "scanner.make_scanner")


def test_unknown_name_and_non_callable_are_distinct_errors():
    """Test that a missing function is an AttributeError and a non-callable attribute
    a TypeError, each naming the function."""
    with pytest.raises(AttributeError, match="no function 'nope'"):
        table("json").lookup("json", "nope")
    with pytest.raises(TypeError, match=r"json:__all__ .* is not callable"):
        table("json").lookup("json", "__all__")


def test_code_sent_by_value_must_be_callable():
    """Test that cloudpickled code is loaded, and refused when it is not a function."""
    import cloudpickle

    assert FunctionTable.unpickle("m", "f", cloudpickle.dumps(len)) is len
    with pytest.raises(TypeError, match="not callable"):
        FunctionTable.unpickle("m", "f", cloudpickle.dumps(42))
