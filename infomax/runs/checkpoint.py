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


def save_training_state(path: Path, modules: dict[str, torch.nn.Module], optimisers: dict[str, torch.optim.Optimizer], counters: dict) -> None:
    tensors, meta = {}, {"counters": counters, "optimisers": {}}
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
