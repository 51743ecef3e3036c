"""Shared fixtures: one quick toy world + base model per test session, in a private cache."""

from __future__ import annotations

import pytest

from pivotune.toy.model import get_or_build
from pivotune.toy.world import WorldConfig


@pytest.fixture(scope="session")
def quick_cfg() -> WorldConfig:
    return WorldConfig.quick()


@pytest.fixture(scope="session")
def quick_paths(tmp_path_factory, quick_cfg):
    return get_or_build(quick_cfg, cache_dir=tmp_path_factory.mktemp("pivotune-cache"))


@pytest.fixture(scope="session")
def quick_world(quick_paths):
    return quick_paths.world
