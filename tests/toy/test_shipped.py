"""The shipped default base model and encoder: installed only for their own config, sha256-checked, and
rebuilt bitwise by their recipe (`pivotune toy build-base`)."""

from __future__ import annotations

import json
import shutil

import pytest

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.toy import shipped
from pivotune.toy.encoder import EncoderConfig
from pivotune.toy.model import ToyPaths
from pivotune.toy.world import WorldConfig


def _fake_shipped(root, key="k1"):
    (root / "base").mkdir(parents=True)
    (root / "base" / "model.safetensors").write_bytes(b"weights")
    (root / "base" / "config.json").write_text("{}")
    files = shipped.file_hashes(root / "base")
    (root / shipped.MANIFEST).write_text(json.dumps({"base": {"key": key, "files": files}}))
    return files


def test_install_copies_only_for_its_own_key(tmp_path):
    """The shipped files are copied for the key they were built for, and for no other."""
    root = tmp_path / "shipped"
    files = _fake_shipped(root)
    assert not shipped.install_shipped("base", "other", tmp_path / "a", root=root)
    assert not (tmp_path / "a").exists()
    assert not shipped.install_shipped("encoder", "k1", tmp_path / "b", root=root)
    assert shipped.install_shipped("base", "k1", tmp_path / "c", root=root)
    assert shipped.file_hashes(tmp_path / "c") == files


def test_damaged_shipped_file_is_refused(tmp_path):
    """An altered or missing shipped file stops the install with a message naming it and the recipe."""
    root = tmp_path / "shipped"
    _fake_shipped(root)
    (root / "base" / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(PivotuneError, match=r"model\.safetensors is damaged.*pivotune toy build-base"):
        shipped.install_shipped("base", "k1", tmp_path / "c", root=root)
    (root / "base" / "model.safetensors").unlink()
    with pytest.raises(PivotuneError, match="sha256 missing"):
        shipped.install_shipped("base", "k1", tmp_path / "d", root=root)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_sha256_helpers_match_hashlib(tmp_path):
    """file_hashes is hashlib's sha256 of each file's bytes."""
    import hashlib

    (tmp_path / "x").write_bytes(b"abc" * 1000)
    assert shipped.file_hashes(tmp_path) == {"x": hashlib.sha256(b"abc" * 1000).hexdigest()}


def test_shipped_files_are_the_default_worlds_and_small():
    """The package ships a base and encoder for exactly the default world and encoder config, under 30 MB,
    and every file matches its recorded sha256."""
    manifest = shipped.read_manifest()
    assert manifest is not None
    cfg = WorldConfig()
    assert manifest["base"]["key"] == cfg.config_hash()
    paths = ToyPaths(shipped.SHIPPED, shipped.SHIPPED / "world", shipped.SHIPPED / "base", cfg)
    assert manifest["encoder"]["key"] == EncoderConfig().key(paths)
    total = 0
    for kind in shipped.KINDS:
        assert shipped.file_hashes(shipped.SHIPPED / kind) == manifest[kind]["files"]
        total += sum((shipped.SHIPPED / kind / name).stat().st_size for name in manifest[kind]["files"])
    assert total < 30 * 2**20
    assert len(manifest["base"]["first_steps"]["losses"]) == shipped.FIRST_STEPS


def test_build_base_refuses_ship_with_steps(tmp_path):
    """--ship records full builds only: with --steps it is refused before anything runs."""
    with pytest.raises(PivotuneError, match="full builds only"):
        shipped.build_base(tmp_path / "out", steps=3, ship=True)
    assert main(["toy", "build-base", "--out", str(tmp_path / "o"), "--steps", "0"]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_recipe_reproduces_the_first_steps(tmp_path):
    """`pivotune toy build-base --steps 20` is bitwise deterministic here (two builds: the same losses and
    weights), follows the shipped builds' first 20 losses to a relative 1e-5 on any machine, and repeats them
    bitwise where the manifest records this machine's environment (library versions and CPU kernels)."""
    records = []
    for name in ("first", "again"):
        code = main(["toy", "build-base", "--out", str(tmp_path / name), "--steps", str(shipped.FIRST_STEPS)])
        records.append(json.loads((tmp_path / name / shipped.MANIFEST).read_text()))
        shutil.rmtree(tmp_path / name)
    manifest = shipped.read_manifest()
    for kind in shipped.KINDS:
        assert records[0][kind]["first_steps"] == records[1][kind]["first_steps"], kind
        assert shipped.largest_loss_difference(records[0][kind]["first_steps"], manifest[kind]["first_steps"]) < 1e-5
    if shipped.same_environment(records[0], manifest):
        assert code == 0 and set(records[0]["compared"].values()) == {f"first {shipped.FIRST_STEPS} steps identical"}
    else:
        assert all("other library versions or CPU kernels" in v for v in records[0]["compared"].values()
                   if not v.endswith("identical"))


def test_comparison_names_the_gap_and_the_environment():
    """A build whose first losses differ from the manifest's says by how much, and whether it was built with the
    shipped files' library versions and CPU kernels; identical first steps say so."""
    env = shipped.environment()
    steps = {"steps": 2, "losses": [2.0, 1.0], "weights_sha256": "a"}
    manifest = {"base": {"key": "k", "first_steps": steps}, **env}
    other = {"base": {"key": "k", "first_steps": {**steps, "losses": [2.0, 1.000002]}}, **env}
    assert shipped.compare(other, manifest) == {"base": "first steps differ (losses by up to 2.0e-06 relative)"}
    moved = {**other, "cpu_capability": "elsewhere"}
    assert "other library versions or CPU kernels" in shipped.compare(moved, manifest)["base"]
    assert shipped.compare({"base": {"key": "k", "first_steps": steps}, **env}, manifest) == {
        "base": "first 2 steps identical"}
