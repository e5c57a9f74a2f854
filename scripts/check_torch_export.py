"""Loads a backbone written by `ssl export --format torch` into scripts/torch_models.py's module
(and torchvision's, for the standard ResNets) with load_state_dict(strict=True), runs it in
evaluation mode on the inputs `ssl embed --inputs` wrote, and compares its features with
ssl's: max |torch - ssl| / max |ssl| must be at most 1e-4. Prints one line; exit status 1 on a
mismatch.
    python scripts/check_torch_export.py MODEL EXPORTED.safetensors EMBEDDINGS.h5
"""
import os
import sys

import h5py
import safetensors.torch
import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

TOLERANCE = 1e-4


def relative_difference(model, state, x, ours):
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        theirs = model(x)
    return ((theirs - ours).abs().max() / ours.abs().max()).item()


def main(name, exported, embeddings):
    state = safetensors.torch.load_file(exported)
    with safe_open(exported, "pt") as f:
        meta = f.metadata()
    with h5py.File(embeddings, "r") as f:
        x = torch.from_numpy(f["inputs"][:])
        ours = torch.from_numpy(f["features"][:])
    diffs = {"torch_models." + name: relative_difference(torch_models.MODELS[name](), state, x, ours)}
    if not name.startswith("small_fmnist"):
        diffs["torchvision"] = relative_difference(torch_models.torchvision_model(name), state, x, ours)
    ok = all(d <= TOLERANCE for d in diffs.values())
    parts = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
    print(f"export {name} ({meta['method']}, {meta['steps']} steps): strict load ok, {len(x)} images {tuple(x.shape[1:])}, "
          f"features {ours.shape[1]}, max |torch - ssl| / max |ssl|: {parts} -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
