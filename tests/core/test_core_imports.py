"""The core is what the worker image installs: it must import without torch (or transformers)."""

from __future__ import annotations

import subprocess
import sys


def test_core_packages_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import bga_mner.preprocessing, bga_mner.decoding, bga_mner.model_repository\n"
        "heavy = ('torch', 'transformers', 'tritonclient', 'onnxruntime')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""
