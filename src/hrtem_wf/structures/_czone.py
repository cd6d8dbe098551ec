"""Import czone without its plotting module.

czone's `__init__` imports `czone.viz`, which imports matplotlib.pyplot: 0.35 s of every structure
job (benchmarks/jobs.py) for plots we never draw. `import_czone` imports czone with a placeholder
for `czone.viz` and then removes it, so a later `import czone.viz` (a notebook's) loads the real
module.
"""

from __future__ import annotations

import sys
import types


def import_czone() -> None:
    """Import czone (if not yet imported) without czone.viz; later imports of czone.viz work."""
    if "czone" in sys.modules:
        return
    placeholder = types.ModuleType("czone.viz")
    sys.modules["czone.viz"] = placeholder
    try:
        import czone
    finally:
        if sys.modules.get("czone.viz") is placeholder:
            del sys.modules["czone.viz"]
    if getattr(czone, "viz", None) is placeholder:
        del czone.viz
