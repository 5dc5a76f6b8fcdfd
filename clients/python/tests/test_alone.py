"""The client stands alone: it needs httpx and websockets, and imports nothing of the service's."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

SERVICE_SIDE = ("torch", "pandas", "numpy", "fastapi", "data", "models", "training", "service")


def test_its_distribution_requires_httpx_and_websockets_only() -> None:
    requires = importlib.metadata.requires("latentcast-client") or []
    needed = {re.split(r"[ <>=;\[]", r)[0] for r in requires if "extra ==" not in r}
    assert needed == {"httpx", "websockets"}


def test_importing_it_loads_nothing_of_the_service() -> None:
    code = "import sys, latentcast_client; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(
        subprocess.run([sys.executable, "-I", "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert "latentcast_client" in loaded and "httpx" in loaded and "websockets" in loaded
    assert not loaded & set(SERVICE_SIDE), loaded & set(SERVICE_SIDE)
