import pytest

from nlakit.toyworld.build import build_world, world_config


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A `--size small` world, built once per test session (about 10 s)."""
    out = tmp_path_factory.mktemp("worlds") / "small"
    build_world(out, world_config("small", seed=0), progress=False)
    return out
