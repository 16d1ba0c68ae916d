"""Shared test fixtures: where the authors' reference artefacts live, and skipping without them."""
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

# The authors' published π-DOC v0.1 files are reference data beside the project, never copied into it.
REFERENCE_DIRECTORY = PROJECT_ROOT.parent / "shared" / "reference" / "piDOC_v0.1"


@pytest.fixture(scope="session")
def reference_directory():
    """Path to the authors' artefacts; skip the test with a clear reason where they are absent."""
    if not REFERENCE_DIRECTORY.is_dir():
        pytest.skip(f"authors' reference artefacts not found at {REFERENCE_DIRECTORY} (../shared is absent)")
    return REFERENCE_DIRECTORY
