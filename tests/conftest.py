"""Shared test models. Each is small, seeded and deterministic."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import xai
from tests._background import Scheduler

# The Hugging Face models in the tests are built from their configs: never download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ------------------------------------------------------------ background runs

_SCHEDULER: Scheduler | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the background runs of the tests selected (tests/_background.py)."""
    global _SCHEDULER
    names = [m.args[0] for item in session.items for m in item.iter_markers("background")]
    _SCHEDULER = Scheduler(names)


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    if _SCHEDULER is not None:
        _SCHEDULER.poll()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SCHEDULER is not None:
        _SCHEDULER.close()


@pytest.fixture(scope="session")
def background() -> Scheduler:
    """The session's background runs: ``background.result(NAME)`` (tests/_background.py)."""
    if _SCHEDULER is None:
        raise RuntimeError("background runs start when collection ends; none was started")
    return _SCHEDULER


class TwoStage(nn.Module):
    """``body`` (conv, ReLU, conv, ReLU) then a ``tail`` with no global pooling.

    The explained layer ``body.3`` has spatially varying gradients (the tail flattens into
    a Linear), so the Grad-CAM variants really differ here. Tests compute the reference
    activations as ``model.body(x)`` and their gradients through ``model.tail``
    themselves, with no hooks.
    """

    def __init__(self, in_channels: int = 3, inplace: bool = False, classes: int = 7) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.ReLU(inplace=inplace),
        )
        self.tail = nn.Sequential(
            nn.Conv2d(6, 5, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(5 * 4 * 4, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))


def fashion_mnist_installed() -> bool:
    """Whether the real Fashion-MNIST files are here (Debian's dataset-fashion-mnist)."""
    try:
        xai.data.find_root("fashion-mnist")
    except FileNotFoundError:
        return False
    return True


def make_two_stage(seed: int = 0, **kwargs) -> TwoStage:
    torch.manual_seed(seed)
    model = TwoStage(**kwargs)
    with torch.no_grad():  # larger biases so that ReLUs are neither all on nor all off
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(2.0)
                m.bias.uniform_(-0.1, 0.4)
    return model.eval()


def make_gapcnn(seed: int = 0, **kwargs) -> xai.models.GAPCNN:
    torch.manual_seed(seed)
    options = {"in_channels": 1, "num_classes": 5, "channels": (4, 8, 6), "convs_per_block": 1}
    options.update(kwargs)
    model = xai.models.GAPCNN(**options)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.3)
    return model.eval()


@pytest.fixture
def two_stage() -> TwoStage:
    return make_two_stage()


@pytest.fixture
def gapcnn() -> xai.models.GAPCNN:
    return make_gapcnn()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(3, 3, 8, 8)


@pytest.fixture
def gray() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.rand(4, 1, 16, 16)


def start_ray(ray, **options):
    """``ray.init`` for the tests, keeping this process's signal handlers (the library's
    own ``init_ray``): other tests check SIGTERM's handling."""
    from xai.integrations.ray import init_ray

    init_ray(ray, include_dashboard=False, log_to_driver=False, **options)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster of 2 CPUs for the whole session (started once, ~3 s).

    Tests that need a different cluster (two nodes) shut this one down with
    ``ray.shutdown()`` and must leave Ray shut down; this fixture re-starts it when it
    finds Ray not running.
    """
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        start_ray(ray, num_cpus=2)
    return ray


@pytest.fixture
def ray_session(ray_local):
    """The local Ray cluster, started again if an earlier test shut it down."""
    if not ray_local.is_initialized():
        start_ray(ray_local, num_cpus=2)
    return ray_local
