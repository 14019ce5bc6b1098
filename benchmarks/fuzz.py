"""The long fuzz run: the CI fuzz test (tests/test_fuzz.py) with many more examples.

    .venv/bin/python benchmarks/fuzz.py [EXAMPLES_PER_OPERATION]   (default 500)

It starts its own server on a free loopback port and the embedded FerretDB (or uses
MONGODB_URL), and fails if any answer is a 5xx.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    examples = sys.argv[1] if len(sys.argv) > 1 else "500"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DMP_FHIR_FUZZ_EXAMPLES": examples}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_fuzz.py"]
    return subprocess.call(command, cwd=root, env=env)


if __name__ == "__main__":
    sys.exit(main())
