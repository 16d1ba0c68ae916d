"""Write MANIFEST.sha256: the SHA-256 of every committed artefact (weights, calibration files,
standardisation constants, test maps, the example observation).

Run it after changing any of them: `python3 scripts/write_manifest.py`. A test checks every line.
"""
import hashlib
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from pidoc.io import save_text  # noqa: E402

MANIFEST_FOLDERS = ("trained_piDOC", "input_files", "examples")


def write_manifest(project_root=PROJECT_ROOT):
    """Hash every file in MANIFEST_FOLDERS (temporary files left out) into MANIFEST.sha256; return the count."""
    lines = []
    for folder in MANIFEST_FOLDERS:
        for path in sorted((project_root / folder).rglob("*")):
            if path.is_file() and ".tmp" not in path.name:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                lines.append(f"{digest}  {path.relative_to(project_root)}")
    save_text(project_root / "MANIFEST.sha256", "\n".join(lines) + "\n")
    return len(lines)


if __name__ == "__main__":
    print(f"manifest: {write_manifest()} files in MANIFEST.sha256")
