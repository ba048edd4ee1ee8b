"""Child processes hide the packages their libraries import without using (runtimes.lean_start)."""
from __future__ import annotations

import json
import subprocess
import sys

from edgeport.runtimes import runner_class
from edgeport.runtimes.lean_start import UNUSED_BY_CLASSIFIERS, hiding_code
from edgeport.variants import VARIANTS


def _child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"USE_TF": "0", "PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hidden_packages_look_absent_and_imported_ones_stay():
    result = _child(
        "import importlib.util, json, sys\n"
        "import json as already\n"
        "from edgeport.runtimes.lean_start import hide_unused_packages\n"
        "hidden = hide_unused_packages(('sklearn', 'json'))\n"
        "try:\n    import sklearn\n    imported = True\nexcept ImportError:\n    imported = False\n"
        "print(json.dumps({'hidden': hidden, 'spec': importlib.util.find_spec('sklearn') is None,\n"
        "                  'imported': imported, 'json_works': json.dumps(1) == '1'}))\n")
    assert result == {"hidden": ["sklearn"], "spec": True, "imported": False, "json_works": True}


def test_the_reference_runner_loads_a_model_with_its_unused_packages_hidden(tiny_vit):
    """What the PyTorch reference worker hides, transformers can do without: the model loads and runs,
    and none of them was imported (a transformers that needs one fails the worker, and this test)."""
    assert runner_class("torch").unused_packages == UNUSED_BY_CLASSIFIERS
    result = _child(
        hiding_code(UNUSED_BY_CLASSIFIERS)
        + "import json, sys\nimport numpy as np\nfrom edgeport.runtimes import runner_class\n"
        + f"with runner_class('torch')({str(tiny_vit)!r}) as r:\n"
        + "    logits = r.infer(np.zeros((1, 3, 32, 32), np.float32))\n"
        + "print(json.dumps({'shape': list(logits.shape), 'loaded': sorted(n for n in "
        + f"{UNUSED_BY_CLASSIFIERS!r} if sys.modules.get(n) is not None)}}))\n")
    assert result == {"shape": [1, 2], "loaded": []}


def test_steps_declare_only_packages_that_are_installed():
    """An entry for a package that is not installed would hide nothing: a stale declaration."""
    import importlib.util

    declared = {name for spec in VARIANTS.values() for name in spec.unused_packages}
    declared |= {name for runtime in ("torch", "savedmodel") for name in runner_class(runtime).unused_packages}
    assert declared and all(importlib.util.find_spec(name) is not None for name in declared), declared
