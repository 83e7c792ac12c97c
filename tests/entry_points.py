"""Installing an example package for a test without pip: its source on the path and its entry points declared."""

from __future__ import annotations

from pathlib import Path


def install_entry_point(monkeypatch, tmp_path: Path, distribution: str, group: str, line: str, source: Path) -> None:
    """What ``pip install`` of an example package leaves behind: ``source`` importable and its entry point
    (``line``, e.g. ``name = module:Object``) declared under ``group`` in a dist-info folder on the path."""
    dist_info = tmp_path / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{group}]\n{line}\n")
    monkeypatch.syspath_prepend(str(source))
    monkeypatch.syspath_prepend(str(tmp_path))
