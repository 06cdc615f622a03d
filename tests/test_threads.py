"""Several threads explaining one model at once get exactly the maps of serial calls,
and the model is left exactly as it was (flags, batch-norm statistics, hooks)."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

import xai
from tests._vit import make_vit
from tests.conftest import make_gapcnn
from tests.test_safety import all_hooks
from xai.core.hooks import forward_hooks

JOBS = [
    ("gradcam", {}),
    ("guided-backprop", {}),
    ("ablationcam", {"batch_size": 3}),
    ("scorecam", {"batch_size": 9}),
    ("cam", {}),
    ("gradcam++", {"layer": "features.6"}),
    ("eigencam", {}),
    ("guided-gradcam", {}),
    ("layercam", {"layer": "features.2"}),
]


def _jobs(count: int, channels: int, size: int, methods) -> list[tuple]:
    generator = torch.Generator().manual_seed(0)
    jobs = []
    for i in range(count):
        method, options = methods[i % len(methods)]
        x = torch.rand(2, channels, size, size, generator=generator)
        target = [i % 5, (i + 2) % 5]
        jobs.append((method, options, x, target))
    return jobs


def _state(model: nn.Module) -> tuple:
    flags = {name: m.training for name, m in model.named_modules()}
    return flags, copy.deepcopy(model.state_dict())


def _run_threaded(model: nn.Module, jobs: list[tuple], threads: int) -> list:
    start = threading.Barrier(threads)

    def work(job):
        method, options, x, target = job
        return xai.explain(model, x, method=method, target=target, **options)

    def batch(index):
        start.wait()  # all threads begin together
        return [work(job) for job in jobs[index::threads]]

    with ThreadPoolExecutor(threads) as pool:
        per_thread = list(pool.map(batch, range(threads)))
    results = [None] * len(jobs)
    for index, chunk in enumerate(per_thread):
        results[index::threads] = chunk
    return results


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_threads_give_the_maps_of_serial_calls_and_leave_the_model_as_it_was(mode):
    model = make_gapcnn()
    jobs = _jobs(36, 1, 16, JOBS)
    expected = [
        xai.explain(model, x, method=m, target=t, **o) for m, o, x, t in jobs
    ]  # serial, in eval mode
    if mode == "train":
        model.train()
        model.features[1].eval()  # a mixed state must come back exactly
    flags, state = _state(model)
    got = _run_threaded(model, jobs, threads=4)
    for job, a, b in zip(jobs, got, expected, strict=True):
        torch.testing.assert_close(
            a.raw, b.raw, rtol=1e-5, atol=1e-6, msg=lambda m, j=job: f"{j[0]}: {m}"
        )
        assert a.layer == b.layer and a.targets.tolist() == b.targets.tolist()
    after_flags, after_state = _state(model)
    assert after_flags == flags
    for key, value in state.items():
        assert torch.equal(after_state[key], value), key
    assert all_hooks(model) == []


def test_threads_on_a_vision_transformer_with_dropout_in_train_mode():
    model = make_vit()
    methods = [("gradcam", {}), ("scorecam", {"batch_size": 7}), ("ablationcam", {}),
               ("hirescam", {"layer": "blocks.0.norm1"})]  # fmt: skip
    jobs = _jobs(16, 3, 32, methods)
    expected = [xai.explain(model, x, method=m, target=t, **o) for m, o, x, t in jobs]
    model.train()  # dropout on: any call that ran in train mode would differ
    got = _run_threaded(model, jobs, threads=4)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a.raw, b.raw, rtol=1e-5, atol=1e-6)
    assert all(m.training for m in model.modules())
    assert all_hooks(model) == []


def test_a_hook_never_fires_for_another_threads_forward_pass():
    model = make_gapcnn()
    seen = []
    registered, done = threading.Event(), threading.Event()

    def holder():
        with forward_hooks([(model.features[0], lambda m, i, o: seen.append("holder"))]):
            registered.set()
            done.wait(10)
            model(torch.rand(1, 1, 8, 8))  # this thread's own pass: the hook fires

    thread = threading.Thread(target=holder)
    thread.start()
    registered.wait(10)
    model(torch.rand(1, 1, 8, 8))  # another thread's pass while the hook is registered
    assert seen == []
    done.set()
    thread.join()
    assert seen == ["holder"]
    assert all_hooks(model) == []
