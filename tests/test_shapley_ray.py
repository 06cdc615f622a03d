"""``exact_shapley(engine="ray")``: the local engine's values, from Ray tasks.

The tests run on a real local Ray cluster of 2 CPUs (the ``ray_session`` fixture); the
engine must give the local engine's table and so its values (exactly: the game sees the
same calls), raise the game's own errors as the game raised them, and refuse what it
cannot run (an unpicklable game, Ray missing, a cluster out of reach) saying the fix.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest

import xai
from xai.core.errors import XAIError, XAIImportError, XAITypeError, XAIValueError
from xai.shapley import FunctionGame, Game, ModelGame, housing, ray_engine
from xai.shapley.ray_engine import RayClusterError, task_size_for

HOUSING = {(): 20, (0,): 23, (1,): 24, (2,): 25, (0, 1): 24, (0, 2): 26, (1, 2): 28, (0, 1, 2): 30}

RNG = np.random.default_rng(7)
N = 12
W1 = RNG.normal(size=(N, 16)) / np.sqrt(N)
W2 = RNG.normal(size=(16, 3))
A = RNG.normal(size=(N, N)) / N
X = RNG.normal(size=N)
BACKGROUND = RNG.normal(size=(50, N))


def mlp(rows: np.ndarray) -> np.ndarray:
    """A nonlinear model with interactions: tanh features, a quadratic form, a product."""
    return (
        np.tanh(rows @ W1) @ W2[:, 0]
        + np.einsum("ri,ij,rj->r", rows, A, rows)
        + (rows[:, 0] * rows[:, 1])
    )


def mlp3(rows: np.ndarray) -> np.ndarray:
    """Three outputs, of the first 12 or fewer features."""
    return np.tanh(rows @ W1[: rows.shape[1]]) @ W2 + (rows[:, :1] * rows[:, 1:2]) ** 2


def both(game, **options):
    """The local and the Ray engine's results on the same game and options."""
    return xai.exact_shapley(game, **options), xai.exact_shapley(game, engine="ray", **options)


def assert_same(local, remote):
    np.testing.assert_allclose(remote.values, local.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(remote.values, local.values)  # the same calls: the same bits
    np.testing.assert_array_equal(remote.base_value, local.base_value)
    np.testing.assert_array_equal(remote.full_value, local.full_value)
    assert remote.values.dtype == local.values.dtype
    assert remote.feature_names == local.feature_names
    assert remote.n_evaluations == local.n_evaluations
    if local.interactions is not None:
        np.testing.assert_allclose(remote.interactions, local.interactions, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(remote.interactions, local.interactions)


# ------------------------------------------------------------------ the same values


def test_the_housing_game_as_the_local_engine(ray_session):
    local, remote = both(HOUSING)
    np.testing.assert_allclose(remote.values, [11 / 6, 10 / 3, 29 / 6], rtol=0, atol=1e-12)
    assert_same(local, remote)
    assert (remote.base_value, remote.full_value) == (20.0, 30.0)


def test_the_housing_game_in_exact_fractions(ray_session):
    for game, options in ((housing(exact=True), {}), (HOUSING, {"exact": True})):
        local, remote = both(game, **options)
        assert remote.values.tolist() == [Fraction(11, 6), Fraction(10, 3), Fraction(29, 6)]
        assert remote.values.tolist() == local.values.tolist()
        assert all(type(v) is Fraction for v in remote.values)
        assert remote.base_value == Fraction(20) and remote.full_value == Fraction(30)
        assert remote.base_value + sum(remote.values) == remote.full_value
        assert remote.exact


def test_a_model_game_over_many_small_tasks(ray_session, monkeypatch):
    game = ModelGame(mlp, X, BACKGROUND)
    waits = []
    wait = ray_session.wait

    def counting_wait(refs, **kwargs):
        waits.append(len(refs))
        return wait(refs, **kwargs)

    monkeypatch.setattr(ray_session, "wait", counting_wait)
    local, remote = both(game, chunk_size=64)  # 4,096 coalitions: 64 tasks
    assert_same(local, remote)
    # Results held at once: at most two tasks per CPU in flight (2 CPUs here).
    assert len(waits) >= 60
    assert max(waits) <= ray_engine.IN_FLIGHT_PER_CPU * 2
    # Other chunkings of the same game agree to rounding.
    np.testing.assert_allclose(remote.values, xai.exact_shapley(game).values, atol=1e-12)
    np.testing.assert_allclose(remote.base_value + remote.values.sum(), remote.full_value)


def test_a_model_game_by_default_chunks(ray_session):
    # Default tasks are whole numbers of the game's preferred chunk (81 coalitions of 50
    # rows here; 9 tasks of 6 chunks): the game sees the local engine's calls.
    local, remote = both(ModelGame(mlp, X, BACKGROUND, batch_size=1 << 12))
    assert_same(local, remote)


def test_a_model_game_with_three_outputs(ray_session):
    local, remote = both(ModelGame(mlp3, X, BACKGROUND), chunk_size=256)
    assert remote.values.shape == (N, 3)
    assert remote.base_value.shape == (3,)
    assert_same(local, remote)


def test_interactions(ray_session):
    local, remote = both(HOUSING, interactions=True)
    assert_same(local, remote)
    assert remote.interactions[0, 1] == -1.0
    game = ModelGame(mlp3, X[:8], BACKGROUND[:, :8])
    local, remote = both(game, interactions=True, chunk_size=32)
    assert remote.interactions.shape == (8, 8, 3)
    assert_same(local, remote)


def test_an_already_initialised_session_is_used_as_it_is(ray_session, monkeypatch):
    def no_init(*args, **kwargs):
        raise AssertionError("ray.init called although Ray was initialised")

    monkeypatch.setattr(ray_session, "init", no_init)
    xai.exact_shapley(HOUSING, engine="ray")
    assert ray_session.is_initialized()  # and left running


def test_task_sizes():
    # At least 4 tasks per CPU, each a whole number of chunks, at most 2^20 coalitions.
    for total, chunk, cpus in [(1 << 20, 655, 2), (1 << 22, 655, 64), (1 << 12, 64, 2)]:
        size = task_size_for(total, chunk, cpus)
        assert size % chunk == 0
        assert -(-total // size) >= 4 * cpus
    assert task_size_for(1 << 30, 1 << 14, 2) == 1 << 20  # not 2^27 per task
    assert task_size_for(8, 1 << 14, 2) == 1 << 14  # never below one chunk
    assert task_size_for(1 << 12, 1310, 2) == 1310


# ------------------------------------------------------------------ errors


def nan_for_some(masks: np.ndarray) -> np.ndarray:
    out = masks.sum(axis=1).astype(float)
    out[masks[:, 1] & masks[:, 4]] = np.nan  # in many chunks: the first is named
    return out


def test_a_nan_value_is_the_local_engines_error(ray_session):
    with pytest.raises(XAIValueError) as local:
        xai.exact_shapley(nan_for_some, n_features=8, chunk_size=16)
    with pytest.raises(XAIValueError) as remote:
        xai.exact_shapley(nan_for_some, n_features=8, chunk_size=16, engine="ray")
    assert type(remote.value) is XAIValueError  # not a RayTaskError
    assert str(remote.value) == str(local.value)
    assert "the coalition {x1, x4} is nan" in str(remote.value)
    assert "ray::" not in str(remote.value)


def shapes_differ(masks: np.ndarray) -> np.ndarray:
    values = masks.sum(axis=1).astype(float)
    return values if not masks[0].any() else np.stack([values, values], axis=1)


def divides_by_zero(masks: np.ndarray) -> np.ndarray:
    """A bug in a model: a division by zero in Python."""
    return masks.sum(axis=1) * (1 / (len(masks) - len(masks)))


def test_other_errors_of_the_game(ray_session):
    with pytest.raises(XAIValueError) as local:
        xai.exact_shapley(shapes_differ, n_features=5, chunk_size=8)
    with pytest.raises(XAIValueError) as remote:
        xai.exact_shapley(shapes_differ, n_features=5, chunk_size=8, engine="ray")
    assert str(remote.value) == str(local.value)
    assert "shape (2,) for some coalitions and () for others" in str(remote.value)
    # Not an xai error: a bug in the model, raised with Ray's remote traceback.
    with pytest.raises(ZeroDivisionError):
        xai.exact_shapley(divides_by_zero, n_features=3, engine="ray")


class Locked(Game):
    """A game that holds a lock: it cannot be pickled."""

    def __init__(self) -> None:
        super().__init__(["a", "b"])
        self.lock = threading.Lock()

    def value(self, masks: np.ndarray) -> np.ndarray:
        with self.lock:
            return masks.sum(axis=1).astype(float)


def with_a_generator():
    numbers = (i for i in range(3))
    return FunctionGame(lambda masks: masks.sum(axis=1) + 0 * len([numbers]), n_features=3)


@pytest.mark.parametrize(
    ("game", "name", "why"),
    [(Locked, "Locked", "_thread.lock"), (with_a_generator, "FunctionGame", "generator")],
)
def test_an_unpicklable_game_is_refused_with_the_fix(game, name, why, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("started Ray first"))
    with pytest.raises(XAITypeError) as refused:
        xai.exact_shapley(game(), engine="ray")
    message = str(refused.value)
    assert f"the game ({name}) cannot be sent to the Ray workers" in message
    assert why in message
    assert "module-level functions and picklable state" in message
    assert "engine='local'" in message
    assert "\n" not in message
    assert xai.exact_shapley(game()).values.shape == (game().n,)  # fine locally


def test_a_bad_engine_is_refused():
    with pytest.raises(XAIValueError, match=r"engine must be 'local' or 'ray'; got 'bogus'"):
        xai.exact_shapley(HOUSING, engine="bogus")
    with pytest.raises(XAITypeError, match=r"engine must be 'local' or 'ray'; got int 2"):
        xai.exact_shapley(HOUSING, engine=2)


def test_ray_not_installed_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(XAIImportError) as missing:
        xai.exact_shapley(HOUSING, engine="ray")
    message = str(missing.value)
    assert "pip install 'xai-toolkit[ray]'" in message
    assert "\n" not in message
    assert xai.exact_shapley(HOUSING).values.shape == (3,)  # the local engine needs no Ray


@pytest.mark.parametrize("address", ["10.0.0.9:6379", None])
def test_a_cluster_out_of_reach_says_how_to_start_it(address, monkeypatch):
    ray = pytest.importorskip("ray")

    def unreachable(*args, **kwargs):
        if address:
            raise ConnectionError(f"Failed to connect to GCS at {address}\nretried 5 times")
        raise RuntimeError("Failed to start the raylet")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", unreachable)
    monkeypatch.setattr(ray_engine, "_probe", lambda address: None)  # it answers, say
    if address:
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(RayClusterError) as refused:
        xai.exact_shapley(HOUSING, engine="ray")
    assert isinstance(refused.value, XAIError) and isinstance(refused.value, ConnectionError)
    message = str(refused.value)
    if address:
        assert f"the Ray cluster at {address} (RAY_ADDRESS)" in message
    assert "ray start --head" in message
    assert "ray.init(address=...) yourself" in message
    assert "\n" not in message


def test_an_address_nothing_answers_at_is_refused_at_once(monkeypatch):
    import socket
    import time

    ray = pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray would wait minutes"))
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    start = time.perf_counter()
    with pytest.raises(RayClusterError) as refused:
        xai.exact_shapley(HOUSING, engine="ray")
    assert time.perf_counter() - start < 10
    message = str(refused.value)
    assert f"the Ray cluster at 127.0.0.1:{port} (RAY_ADDRESS)" in message
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in message
    assert "ray start --head" in message


def test_the_local_engine_never_imports_ray():
    code = (
        "import sys, xai\n"
        "xai.exact_shapley(xai.shapley.housing(), engine='local')\n"
        "xai.exact_shapley({(): 0, (0,): 1}, interactions=True)\n"
        "import xai.shapley.ray_engine\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
