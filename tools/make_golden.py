"""Generate golden JTFS coefficients from the reference package (scrapl-loss 0.1.0).

Run with the reference environment, built by ``bash tools/reference_env.sh``
(a venv ``.venv-ref`` with ``torch>=2.6,<2.12``, the matching torchaudio and
``pip install scrapl-loss==0.1.0``, plus this repository installed
``--no-deps -e .``):

    .venv-ref/bin/python tools/make_golden.py [--out tests/data]

The reference's bundled kymatio is reached by ``import scrapl`` first, then
``kymatio.scattering1d.frontend.torch_frontend`` (``kymatio.torch`` does not
import with current scipy).

For each config it stores the input signals and the reference's second-order
paths (n_paths, F', T') per signal, plus its first-order joint paths when the
reference's full transform runs. When T or F is 'global' the reference's full
'joint' transform crashes, so paths come from its single-path route, cut in
time like its full transform; with F='global' its spin-0 paths keep their
frequency axis, which is summed here (our convention: every path has one
frequency bin, like kymatio's global average).
"""
import argparse
import logging
import os

import torch

logging.disable(logging.WARNING)
import scrapl  # noqa: E402,F401  (puts the bundled kymatio on the path)
from kymatio.scattering1d.frontend.torch_frontend import TimeFrequencyScatteringTorch  # noqa: E402
from scrapl.single_path_jtfs import TimeFrequencyScrapl  # noqa: E402

CONFIGS = {
    # name: (N, J, Q1, Q2, J_fr, Q_fr, T, F)
    "local_default": (2048, 5, 4, 2, 2, 1, None, None),
    "paper_like": (4096, 6, 8, 2, 3, 2, None, None),
    "int_T_int_F": (2048, 5, 6, 1, 3, 2, 64, 4),
    "global_T": (2048, 5, 4, 2, 3, 1, "global", None),
    "global_F": (2048, 6, 4, 2, 2, 2, 128, "global"),
    "global_T_global_F": (1500, 4, 3, 1, 2, 1, "global", "global"),
}


def signals(N, n=2, seed=0):
    """An amplitude-modulated chirp over a faint noise floor, then white noise.

    The noise floor keeps every path's energy well above float32 rounding: a
    path of a pure chirp can be 1e-5 below the largest one, where both
    implementations are accurate to only ~1e-3 relative.
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(N, dtype=torch.float64) / N
    chirp = torch.sin(2 * torch.pi * (20 * t + 200 * t**2)) * (1 + 0.5 * torch.sin(2 * torch.pi * 6 * t))
    noise = torch.randn(n - 1, N, generator=g, dtype=torch.float64)
    chirp = chirp + 0.05 * torch.randn(N, generator=g, dtype=torch.float64)
    return torch.cat([chirp[None], noise]).float()


def golden(N, J, Q1, Q2, J_fr, Q_fr, T, F):
    x = signals(N)
    kw = dict(shape=(N,), J=J, Q=(Q1, Q2), J_fr=J_fr, Q_fr=Q_fr, T=T, F=F)
    single = TimeFrequencyScrapl(**kw)
    keys = [k for k in single.meta()["key"] if len(k) == 2]
    out = {"config": dict(N=N, J=J, Q1=Q1, Q2=Q2, J_fr=J_fr, Q_fr=Q_fr, T=T, F=F), "x": x, "keys": keys}
    if T != "global" and F != "global":
        full = TimeFrequencyScatteringTorch(format="joint", **kw)
        S = full(x)
        n_first = S.shape[1] - len(keys)
        out["first_order"] = S[:, :n_first].clone()
        out["second_order"] = S[:, n_first:].clone()
        return out
    res = single.log2_stride
    coefs = []
    for n2, n_fr in keys:
        c = single.scattering_singlepath(x.reshape(-1, 1, N), n2, n_fr)["coef"][:, 0, ..., 0]
        if T != "global":
            c = c[..., single.ind_start[res]:single.ind_end[res]]
        if F == "global" and c.shape[-2] != 1:
            c = c.sum(dim=-2, keepdim=True)
        coefs.append(c)
    out["second_order"] = torch.stack(coefs, dim=1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, cfg in CONFIGS.items():
        data = golden(*cfg)
        path = os.path.join(args.out, f"golden_jtfs_{name}.pt")
        torch.save(data, path)
        print(f"{name}: {len(data['keys'])} paths, second order {tuple(data['second_order'].shape)} -> {path}")


if __name__ == "__main__":
    main()
