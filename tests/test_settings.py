"""The torch-free settings of the plug-ins (issue 12) against their implementations: a declaration and the
class or function it names cannot drift apart."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from curriculab.config import Strict
from curriculab.data.copies import COPY_MAKERS
from curriculab.methods import METHOD_SETTINGS
from curriculab.methods.settings import EXCLUSIVE, MethodParams, declare
from curriculab.registry import load_object, ref_of


def test_every_declared_method_is_its_registered_class_with_the_declared_settings():
    from curriculab.methods.base import METHODS

    assert set(METHOD_SETTINGS.names()) >= {"baseline", "cbs", "csa", "data_parameters", "poa",
                                            "progressive_sharpening", "spl_advise", "ttsa"}
    for name in METHOD_SETTINGS.names():
        s = METHOD_SETTINGS.get(name)
        cls = load_object(s.impl)
        assert METHODS.get(name) is cls, name
        assert cls.Params is s.Params and cls.PretrainParams is s.PretrainParams, name
        assert s.hooks == {h for h in EXCLUSIVE if cls.overrides(h)}, name
        assert issubclass(s.Params, BaseModel)


def test_every_declared_copy_kind_names_its_maker():
    assert {"box", "gaussian"} <= set(COPY_MAKERS.names())
    for kind, maker in COPY_MAKERS.items():
        assert callable(load_object(maker.impl)), kind


@pytest.fixture
def declared():
    """Names declared by a test, forgotten afterwards (with any class registered under them)."""
    from curriculab.methods.base import METHODS

    names: list[str] = []
    yield names
    for name in names:
        METHOD_SETTINGS.remove(name)
        METHODS.remove(name)


def test_a_class_overriding_hooks_its_declaration_does_not_claim_is_refused(declared):
    from curriculab.methods.base import Method

    declared.append("claims_nothing_for_test")
    declare("claims_nothing_for_test", f"{__name__}:test_a_class_overriding_hooks_its_declaration_does_not_"
            "claim_is_refused.<locals>.Loud")
    with pytest.raises(ValueError, match=r"claims the hooks \[\] but .* overrides \['loss'\]"):
        class Loud(Method):
            name = "claims_nothing_for_test"

            def loss(self, outputs, batch, state):
                return None


def test_a_class_named_for_another_implementation_is_refused(declared):
    from curriculab.methods.base import Method

    declared.append("elsewhere_for_test")
    declare("elsewhere_for_test", "somewhere.else:Method")
    with pytest.raises(ValueError, match="is implemented by somewhere.else:Method"):
        class Impostor(Method):
            name = "elsewhere_for_test"


def test_a_declared_class_cannot_set_a_schema_of_its_own(declared):
    from curriculab.methods.base import Method

    class Own(Strict):
        x: int = 1

    declared.append("own_schema_for_test")
    declare("own_schema_for_test", f"{__name__}:test_a_declared_class_cannot_set_a_schema_of_its_own.<locals>.Mine")
    with pytest.raises(ValueError, match="sets its own Params"):
        class Mine(Method):
            name = "own_schema_for_test"
            Params = Own


def test_an_undeclared_class_is_declared_from_its_own_attributes(declared):
    from curriculab.methods.base import Method

    class Own(MethodParams):
        x: int = 1

    declared.append("undeclared_for_test")

    class Free(Method):
        name = "undeclared_for_test"
        Params = Own

        def predict(self, model, x):
            return None

    s = METHOD_SETTINGS.get("undeclared_for_test")
    assert (s.impl, s.Params, s.PretrainParams, s.hooks) == (ref_of(Free), Own, None, {"predict"})


def test_a_declaration_claiming_a_hook_that_is_not_exclusive_is_refused():
    with pytest.raises(ValueError, match="not exclusive hooks"):
        declare("bad_hook_for_test", "x:Y", hooks=("on_epoch_end",))
    assert "bad_hook_for_test" not in METHOD_SETTINGS


def test_every_built_in_method_is_declared_in_the_settings_package():
    """A method module without a declaration would be missing when only the settings are read (validate)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    code = ("import json\nfrom curriculab.methods import METHOD_SETTINGS, registry\n"
            "declared = METHOD_SETTINGS.names()\nprint(json.dumps([declared, sorted(registry())]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}).stdout
    declared, classes = json.loads(out.splitlines()[-1])
    assert declared == classes
