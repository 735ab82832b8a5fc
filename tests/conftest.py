import jax
import pytest

from . import helpers


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    return helpers.KeyGenerator()


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts from an empty cache with the default budget."""
    import lineax_sparse as lxs

    lxs.clear_cache()
    lxs.set_cache_limit(1 << 30)
    yield
