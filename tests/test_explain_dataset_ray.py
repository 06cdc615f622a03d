"""The Ray engine of ``xai.explain_dataset`` on real local Ray clusters: the same store as
the local engine, on one node and on two, and after a worker is killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import xai
from tests.conftest import make_gapcnn, make_two_stage, start_ray
from xai.core.errors import XAIOSError, XAITypeError

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(path), mode="r")
    out = {name: np.asarray(a[:]) for name, a in g.arrays()}
    for name, sub in g.groups():
        out.update({f"{name}/{k}": np.asarray(a[:]) for k, a in sub.arrays()})
    return out


def _same(a: Path, b: Path) -> None:
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    for key in left:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


def _data(n: int = 60):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_ray_writes_the_store_the_local_engine_writes(ray_session, tmp_path):
    model, (x, y) = make_gapcnn(seed=2), _data()
    kwargs = {"labels": y, "batch_size": 8, "progress": False, "method": ["gradcam", "cam"]}
    local = xai.explain_dataset(model, x, store=tmp_path / "local.zarr", **kwargs)
    ray = xai.explain_dataset(
        model, x, store=tmp_path / "ray.zarr", engine="ray", workers=2, **kwargs
    )
    assert ray.complete and local.complete
    _same(tmp_path / "local.zarr", tmp_path / "ray.zarr")
    assert ray.attrs["engine"] == "ray"


def test_a_model_of_your_own_needs_its_factory(ray_session, tmp_path):
    model, (x, _) = make_two_stage(seed=1, in_channels=1), _data(12)
    x = x[:, :, :8, :8]
    with pytest.raises(XAITypeError, match="model_factory="):
        xai.explain_dataset(model, x, store=tmp_path / "a.zarr", engine="ray", progress=False)
    from functools import partial

    from tests.conftest import TwoStage

    local = xai.explain_dataset(model, x, store=tmp_path / "l.zarr", batch_size=5, progress=False)
    ray = xai.explain_dataset(
        model,
        x,
        store=tmp_path / "r.zarr",
        batch_size=5,
        engine="ray",
        model_factory=partial(TwoStage, in_channels=1),
        progress=False,
    )
    np.testing.assert_array_equal(ray.maps()[:], local.maps()[:])
    with pytest.raises(Exception, match="does not take this model's weights"):
        xai.explain_dataset(
            model,
            x,
            store=tmp_path / "w.zarr",
            engine="ray",
            progress=False,
            model_factory=partial(TwoStage, in_channels=3),
        )


def _workers() -> list[int]:
    """The pids of this machine's Ray Data actor processes explaining chunks."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "_ChunkWorker" in command:
            pids.append(int(entry.name))
    return pids


class Slow(torch.utils.data.Dataset):
    """Each item takes 10 ms to read, so that a run lasts long enough to kill a worker."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        time.sleep(0.01)
        return self.x[i]


def test_a_worker_killed_mid_run_is_retried_and_the_store_is_whole(ray_session, tmp_path):
    model, (x, _) = make_gapcnn(seed=2), _data(160)
    path = tmp_path / "killed.zarr"
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(
                xai.explain_dataset(
                    model,
                    Slow(x),
                    store=path,
                    batch_size=8,
                    engine="ray",
                    workers=2,
                    progress=False,
                )
            )
        except BaseException as error:  # reported below
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        done = path / "done" / "c"
        if done.is_dir() and len(list(done.iterdir())) >= 2 and _workers():
            killed = _workers()[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    thread.join(300)
    assert killed is not None, "the run ended before a worker could be killed"
    assert len(outcome) == 1 and isinstance(outcome[0], xai.ExplanationStore), outcome
    assert outcome[0].complete
    xai.explain_dataset(model, x, store=tmp_path / "local.zarr", batch_size=8, progress=False)
    left, right = _arrays(path), _arrays(tmp_path / "local.zarr")
    for key in right:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


@pytest.mark.slow
def test_a_two_node_cluster_gives_the_same_store(ray_session, tmp_path):
    import signal

    from ray.cluster_utils import Cluster

    ray = ray_session
    ray.shutdown()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        before = signal.getsignal(signal.SIGTERM)
        start_ray(ray, address=cluster.address)  # xai's init_ray: Ray's driver installs
        assert signal.getsignal(signal.SIGTERM) is before  # a handler; the caller's stays
        cluster.wait_for_nodes()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        model, (x, y) = make_gapcnn(seed=2), _data(48)
        s = xai.explain_dataset(
            model,
            x,
            labels=y,
            store=tmp_path / "two.zarr",
            batch_size=6,
            engine="ray",
            workers=2,
            progress=False,
        )
        assert s.complete
    finally:
        ray.shutdown()
        cluster.shutdown()
        for number, handler in handlers.items():  # the cluster's nodes install their own
            signal.signal(number, handler)
    xai.explain_dataset(
        model, x, labels=y, store=tmp_path / "one.zarr", batch_size=6, progress=False
    )
    _same(tmp_path / "one.zarr", tmp_path / "two.zarr")


def test_an_unreachable_cluster_is_one_clear_error_before_any_file(tmp_path):
    code = textwrap.dedent(f"""
        import torch, xai
        from xai.cli import main
        status = main(["explain-dataset", "fashion-mnist:test", "--store",
                       {str(tmp_path / "u.zarr")!r}, "--engine", "ray",
                       "--ray-address", "127.0.0.1:9"])
        print("status", status)
    """)
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert time.monotonic() - began < 60
    assert out.stdout.strip() == "status 2", out
    lines = [line for line in out.stderr.splitlines() if line.startswith("xai:")]
    assert lines == [lines[0]] and "cannot reach the Ray cluster at 127.0.0.1:9" in lines[0]
    assert "ray start --head" in lines[0]
    assert not (tmp_path / "u.zarr").exists()
    from xai.integrations.ray import _probe

    with pytest.raises(XAIOSError, match="cannot reach"):
        _probe("127.0.0.1:9")


def test_without_ray_the_error_is_the_install_command(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import torch, xai
        try:
            xai.explain_dataset(torch.nn.Conv2d(1, 1, 1), torch.rand(2, 1, 4, 4),
                                store={str(tmp_path / "n.zarr")!r}, engine="ray")
        except xai.XAIError as error:
            print(type(error).__name__, error)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "XAIImportError engine='ray' needs Ray: pip install 'xai-toolkit[ray]'"
    )
    assert not (tmp_path / "n.zarr").exists()


def test_import_xai_never_imports_ray_zarr_tqdm_or_rich():
    code = (
        "import sys, xai; xai.explain_dataset; xai.open_store; "
        "print(sorted(m for m in ('ray', 'zarr', 'tqdm', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
