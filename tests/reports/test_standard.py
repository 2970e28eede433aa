"""highdicom's tables of the standard are loaded when a model is, not in the first study."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
from highdicom._standard_utils import get_module_attribute_map as tables
from preread.reports.standard import load_standard_tables
assert tables.cache_info().currsize == 0, "already loaded at import"
load_standard_tables()
assert tables.cache_info().currsize == 1, "not loaded"
"""


def test_load_standard_tables_loads_what_highdicom_loads_lazily() -> None:
    # a fresh interpreter: in this one another test may have loaded them already
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
