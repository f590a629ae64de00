"""Training state as one safetensors file: module weights, optimiser moments, RNG, counters.

Optimiser states are flattened to `optim/<name>/<param index>/<key>` tensors and the scalar
parts (step counts, hyperparameters of the groups) go to the JSON metadata, so nothing is
pickled and a resumed run continues bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .atomic import save_tensors
from .rundir import load_tensors


def save_training_state(path: Path, modules: dict[str, torch.nn.Module], optimisers: dict[str, torch.optim.Optimizer],
                        counters: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    """`extra`: more tensors stored as they are (RNG states of every rank, a sampler's generator)."""
    tensors, meta = {f"extra/{k}": v for k, v in (extra or {}).items()}, {"counters": counters, "optimisers": {}}
    for name, module in modules.items():
        tensors.update({f"model/{name}/{k}": v for k, v in module.state_dict().items()})
    for name, optimiser in optimisers.items():
        state = optimiser.state_dict()
        scalars = {}
        for index, values in state["state"].items():
            for key, value in values.items():
                if torch.is_tensor(value) and value.ndim > 0:
                    tensors[f"optim/{name}/{index}/{key}"] = value
                else:
                    scalars[f"{index}/{key}"] = float(value)
        meta["optimisers"][name] = {"groups": state["param_groups"], "scalars": scalars}
    tensors["rng/cpu"] = torch.get_rng_state()
    save_tensors(path, tensors, {"infomax_state": json.dumps(meta)})


def load_training_state(path: Path, modules: dict[str, torch.nn.Module], optimisers: dict[str, torch.optim.Optimizer]) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["infomax_state"])
    tensors = load_tensors(path)
    for name, module in modules.items():
        prefix = f"model/{name}/"
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, optimiser in optimisers.items():
        saved = meta["optimisers"][name]
        state: dict[int, dict] = {}
        for key, value in saved["scalars"].items():
            index, field = key.split("/", 1)
            state.setdefault(int(index), {})[field] = torch.tensor(value)
        prefix = f"optim/{name}/"
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix):].split("/", 1)
                state.setdefault(int(index), {})[field] = value
        optimiser.load_state_dict({"state": state, "param_groups": saved["groups"]})
    torch.set_rng_state(tensors["rng/cpu"])
    return meta["counters"]


def load_extra(path: Path) -> dict[str, torch.Tensor]:
    """The `extra` tensors of a training state."""
    return {k[len("extra/"):]: v for k, v in load_tensors(path).items() if k.startswith("extra/")}


def rng_state() -> dict[str, torch.Tensor]:
    """This process's CPU, CUDA, numpy and Python random states as tensors (nothing pickled)."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64)),
             "numpy_extra": torch.tensor([pos, has_gauss], dtype=torch.int64), "numpy_gauss": torch.tensor([cached], dtype=torch.float64),
             "python": torch.tensor(internal, dtype=torch.int64)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    pos, has_gauss = (int(v) for v in state["numpy_extra"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, float(state["numpy_gauss"][0])))
    random.setstate((3, tuple(int(v) for v in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
