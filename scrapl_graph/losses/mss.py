r"""The paper's four multi-scale spectral (MSS) baselines.

Each builder returns an ``nn.Module`` called as ``loss(x_hat, x)`` on
(batch, channels, samples) tensors. Write ``S_i`` for the magnitude of the
STFT at resolution i of R (Hann window unless said otherwise) and ``mean``
for the mean over batch, channels, frequency bins and frames.

* :func:`mss_linear`: ``(1/R) sum_i mean | S_i x_hat - S_i x |``
* :func:`mss_log_linear` (Engel et al. 2020, DDSP):
  ``(1/R) sum_i [ mean | S_i x_hat - S_i x | + mean | log S_i x_hat - log S_i x | ]``
* :func:`mss_random` (Steinmetz & Reiss 2020, auraloss): spectral convergence
  plus log-magnitude L1 at 3 resolutions drawn anew at every call.
* :class:`RevisitedMSSLoss` (Schwär & Müller 2023, "Multi-Scale Spectral
  Loss Revisited", IEEE Signal Processing Letters 30): Frobenius distance
  of ``log(1 + gamma S_i)`` under flat-top windows of prime lengths.

The first three are auraloss modules; the settings the paper's experiment
configs use are the defaults here, and keyword arguments override them.
auraloss and SciPy are imported when a loss is built, not with the package.
"""
from __future__ import annotations

import importlib
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..checks import check_pair

# The paper's linear and log + linear configs: six resolutions 64..2048,
# window = FFT size, hop = 1/4 window (75 % overlap, as in DDSP), L1 distances.
PAPER_FFT_SIZES = (64, 128, 256, 512, 1024, 2048)


def _auraloss_freq(name: str):
    return getattr(importlib.import_module("auraloss.freq"), name)


def _paper_settings(w_log_mag: float) -> dict:
    return dict(fft_sizes=list(PAPER_FFT_SIZES), hop_sizes=[n // 4 for n in PAPER_FFT_SIZES],
                win_lengths=list(PAPER_FFT_SIZES), w_sc=0.0, w_phs=0.0, w_lin_mag=1.0, w_log_mag=w_log_mag,
                mag_distance="L1")


#: The auraloss-based variants as ``{"class_path", "init_args"}`` specs (the loss registry's entries).
MSS_SPECS = {
    "mss_linear": {"class_path": "auraloss.freq.MultiResolutionSTFTLoss", "init_args": _paper_settings(0.0)},
    "mss_log_linear": {"class_path": "auraloss.freq.MultiResolutionSTFTLoss", "init_args": _paper_settings(1.0)},
    "mss_random": {"class_path": "auraloss.freq.RandomResolutionSTFTLoss", "init_args": {"max_fft_size": 32767}},
}


def _paper_resolutions(w_log_mag: float, overrides: dict) -> nn.Module:
    settings = _paper_settings(w_log_mag)
    settings.update(overrides)
    return _auraloss_freq("MultiResolutionSTFTLoss")(**settings)


def mss_linear(**overrides) -> nn.Module:
    r"""Linear-magnitude MSS: ``(1/R) sum_i mean | S_i x_hat - S_i x |``.

    Settings from the paper's config ``losses/mss_meso.yml``: FFT sizes 64,
    128, ..., 2048, window lengths equal to them (Hann), hops of a quarter,
    linear-magnitude weight 1, spectral convergence, log-magnitude and phase
    weights 0, L1 distance.

    Args:
        **overrides: ``auraloss.freq.MultiResolutionSTFTLoss`` arguments that
            replace these settings.

    Returns:
        The ``auraloss.freq.MultiResolutionSTFTLoss`` module.
    """
    return _paper_resolutions(0.0, overrides)


def mss_log_linear(**overrides) -> nn.Module:
    r"""Log + linear MSS of DDSP (Engel et al. 2020), alpha = 1.

    ``(1/R) sum_i [ mean | S_i x_hat - S_i x | + mean | log S_i x_hat - log S_i x | ]``,
    where auraloss floors ``S_i`` at ``1e-4`` (its ``eps`` on the squared
    magnitude) before the log.

    Settings from the paper's config ``losses/mss_meso_log.yml``: those of
    :func:`mss_linear` with the log-magnitude weight 1.

    Args:
        **overrides: ``auraloss.freq.MultiResolutionSTFTLoss`` arguments that
            replace these settings.

    Returns:
        The ``auraloss.freq.MultiResolutionSTFTLoss`` module.
    """
    return _paper_resolutions(1.0, overrides)


def mss_random(**overrides) -> nn.Module:
    r"""Random-resolution MSS (Steinmetz & Reiss 2020): auraloss's ``RandomResolutionSTFTLoss``.

    At every call it draws 3 resolutions: FFT size ``2^k`` with k uniform in
    ``[log2(min_fft_size), log2(max_fft_size))`` (integer part), window
    length 1, 1/2 or 1/4 of it, hop a uniform fraction in [0.1, 1) of the
    FFT size, window among Hann, Bartlett, Blackman, Hamming and Kaiser; the
    loss is the mean over them of spectral convergence
    ``||S x - S x_hat||_F / ||S x||_F`` plus ``mean |log S x_hat - log S x|``.

    Settings: ``max_fft_size=32767`` from the paper's config
    ``losses/rand_mss.yml`` (FFT sizes 16 .. 8192 on its 32768-sample
    signals); everything else is auraloss's default, which the config keeps.
    The draws use NumPy's global generator (seed it with ``numpy.random.seed``).

    Args:
        **overrides: ``auraloss.freq.RandomResolutionSTFTLoss`` arguments.

    Returns:
        The ``auraloss.freq.RandomResolutionSTFTLoss`` module; it raises
        ``ValueError`` on signals of ``max_fft_size`` samples or fewer.
    """
    settings = dict(MSS_SPECS["mss_random"]["init_args"])
    settings.update(overrides)
    return _auraloss_freq("RandomResolutionSTFTLoss")(**settings)


class RevisitedMSSLoss(nn.Module):
    r"""MSS loss configured as Schwär & Müller (2023) recommend ("MSS revisited").

    ``L(x_hat, x) = mean_{b,c} sum_i || log(1 + gamma S_i x_hat) - log(1 + gamma S_i x) ||_p``

    where ``S_i`` is the STFT magnitude at resolution i (flat-top window of
    length ``win_lengths[i]``, FFT size ``fft_sizes[i]``, hop
    ``hop_sizes[i]``, centred frames with reflect padding) and ``||.||_p``
    the entrywise p-norm over frequency bins and frames (p = 2: Frobenius).

    Schwär & Müller study how the choices inside an MSS loss (window type
    and lengths, magnitude compression, matrix distance) decide whether its
    gradient with respect to a synthesis parameter such as a frequency
    points towards the target. Their smoother configuration uses a flat-top
    window, whose wide main lobe keeps a partial's energy in its bins as the
    frequency moves; compresses magnitudes with ``log(1 + gamma S)``, which
    is 0 for silent bins, instead of ``log(S + eps)``, whose large negative
    values at spectral zeros make the landscape rugged; and compares the
    compressed spectrograms with an L2 matrix norm. (A magnitude offset
    ``eps`` in ``log(gamma S + eps)`` gives the same loss as ``gamma / eps``
    here.) The window lengths are primes near powers of two.

    Defaults from the paper's config ``losses/mss_revisited.yml``: windows
    and FFT sizes 67, 127, 257, 509, 1021, 2053; hops 33, 63, 128, 254, 510,
    1026 (half a window, rounded down); periodic flat-top window (SciPy's
    five-term ``flattop``); gamma = 1; p = 2 (not squared); a sum over
    resolutions and a mean over examples (and channels: the paper's signals are
    mono).

    Args:
        win_lengths: window lengths, one per resolution.
        fft_sizes: FFT sizes (default: the window lengths); each at least its window.
        hop_sizes: hops (default: half of each window, rounded down).
        gamma: magnitude gain inside the log; positive.
        p: order of the norm over bins and frames; at least 1.
        check_values: the NaN/Inf check of inputs (None: on CPU only; see
            :mod:`scrapl_graph.checks`).

    Raises:
        ValueError: empty or mismatched resolution lists, a non-positive
            size, an FFT smaller than its window, ``gamma <= 0`` or ``p < 1``.
    """

    def __init__(self, win_lengths: Sequence[int] = (67, 127, 257, 509, 1021, 2053),
                 fft_sizes: Optional[Sequence[int]] = None, hop_sizes: Optional[Sequence[int]] = None,
                 gamma: float = 1.0, p: float = 2.0, check_values: Optional[bool] = None):
        super().__init__()
        self.win_lengths = [int(n) for n in win_lengths]
        self.fft_sizes = list(self.win_lengths) if fft_sizes is None else [int(n) for n in fft_sizes]
        self.hop_sizes = [n // 2 for n in self.win_lengths] if hop_sizes is None else [int(n) for n in hop_sizes]
        sizes = (self.win_lengths, self.fft_sizes, self.hop_sizes)
        if not self.win_lengths or len({len(s) for s in sizes}) != 1:
            raise ValueError(f"need one window length, FFT size and hop per resolution, got {sizes}")
        if min(min(s) for s in sizes) < 1 or any(f < w for f, w in zip(self.fft_sizes, self.win_lengths)):
            raise ValueError(f"sizes must be positive and each FFT size at least its window, got {sizes}")
        if not gamma > 0 or not p >= 1:
            raise ValueError(f"gamma must be positive and p at least 1, got gamma={gamma}, p={p}")
        self.gamma, self.p, self.check_values = float(gamma), float(p), check_values
        flattop = importlib.import_module("scipy.signal.windows").flattop
        for i, n in enumerate(self.win_lengths):
            window = torch.as_tensor(flattop(n, sym=False), dtype=torch.get_default_dtype())
            self.register_buffer(f"window_{i}", window, persistent=False)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """The loss between estimate ``x_hat`` and target ``x``, both (batch, channels, samples).

        Raises:
            TypeError: for non-tensors or non-real-floating dtypes.
            ValueError: for mismatched shapes, dtypes or devices, a device
                other than the loss's, NaN/Inf values (see the value-check
                rule), or signals of at most half the largest FFT size (the
                reflect padding of centred frames needs more).
        """
        rows, n = check_pair(x_hat, x, self.window_0.device, min_length=max(self.fft_sizes) // 2 + 1,
                             check_values=self.check_values)
        both = torch.cat([x_hat.reshape(rows, n), x.reshape(rows, n)])  # one STFT per resolution for both
        total = x_hat.new_zeros(rows)
        for i, (win, n_fft, hop) in enumerate(zip(self.win_lengths, self.fft_sizes, self.hop_sizes)):
            window = getattr(self, f"window_{i}").to(x_hat.dtype)
            mag = torch.stft(both, n_fft, hop, win, window, center=True, return_complex=True).abs()
            compressed = torch.log1p(self.gamma * mag)
            total = total + torch.linalg.vector_norm(compressed[:rows] - compressed[rows:], ord=self.p, dim=(-2, -1))
        return total.mean()
