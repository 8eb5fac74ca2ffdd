"""The import direction between the layers, enforced: an import that points up fails here, whether it sits at the
top of a module or inside a function (the layers: tests/layers.py, drawn in the README's architecture section)."""

from __future__ import annotations

import pytest

from tests.layers import ENGINE, layer_of, project_imports, project_modules, upward_imports


def test_no_import_points_up_the_layers():
    assert upward_imports() == []


def test_the_engine_imports_no_django():
    offenders = [
        f"{name}:{line} imports {m}"
        for name, path in project_modules()
        if name.startswith(ENGINE + ".")
        for m, line, _ in project_imports(path)
        if m.split(".")[0] in ("django", "rest_framework", "channels")
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("training.engine.run", ENGINE),
        ("finetune.exceptions", "infrastructure"),
        ("finetune.urls", "wiring"),
        ("dashboard.admin", "dashboard"),
    ],
)
def test_layer_of(module, layer):
    assert layer_of(module) == layer


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from dashboard import services\n    return services\n")
    assert project_imports(sample) == [("os", 1, False), ("dashboard", 4, True)]
