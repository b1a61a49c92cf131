"""Train a small chirplet autoencoder with SCRAPL (the DDSP setting of the SCRAPL paper, section 4.3).

    audio -> encoder (log-spectrogram CNN) -> theta = (theta_AM, theta_FM)
          -> GRAFX graph (in -> chirplet -> out) -> audio_hat;   loss(audio_hat, audio)

No true parameter is used in training: the encoder learns only from the
SCRAPL distance between its re-synthesis and the input. Every rendering of
the chirplet, in the data set and in training, is shifted by a random number
of samples (the paper's "meso" setting), so input and re-synthesis are never
aligned. After every epoch the validation parameter error
|sigmoid(theta) - sigmoid(theta_true)| is printed in per mille, next to the
error of always predicting the middle of both ranges.

This is a toy version of the paper's experiment (3072 training examples,
50 epochs, a 604 K-parameter encoder on a GPU): with the defaults it runs in
under two minutes on a CPU, which is only the start of training. Pass
``--loss mss`` to train the same encoder with the multi-scale spectral loss
(AdamW), and more ``--epochs`` / ``--train`` to go further.

Training runs on PyTorch Lightning through
:func:`scrapl_graph.lightning.train_predictor` (the extra ``train``): pass
``--root-dir DIR`` to keep CSV logs and the last checkpoint there.

Run:  python examples/train_predictor.py
      python examples/train_predictor.py --epochs 1 --train 16 --val 8   (smoke test)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch import nn

try:
    import scrapl_graph  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scrapl_graph.graph import GraphSynth, make_predictor_head
from scrapl_graph.lightning import train_predictor
from scrapl_graph.losses import SCRAPLLoss, build_loss
from scrapl_graph.processors import ChirpletSynth
from scrapl_graph.train import normalized_param_error


def build_synth(args, shift_seed: int) -> GraphSynth:
    synth = ChirpletSynth.from_preset(args.preset, sample_rate=args.sample_rate, num_samples=args.n,
                                      f0_hz=args.sample_rate / 16, max_shift=args.max_shift, seed=shift_seed)
    return GraphSynth.chain({"chirplet": synth}, num_samples=args.n)


def make_data(args, count: int, seed: int):
    """``count`` chirplets with parameters uniform in their ranges, each with its own random shift."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.logit(torch.rand(count, 2, generator=gen).clamp(0.02, 0.98))
    with torch.no_grad():
        audio = build_synth(args, shift_seed=seed)(theta)
    return audio, theta


class SpectrogramEncoder(nn.Module):
    """log(1 + |STFT|) -> 4 conv blocks (conv, batch norm, PReLU, 2x2 max pool) -> linear head."""

    def __init__(self, n_theta: int, n_fft: int = 256, channels: int = 16):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft))
        blocks, c_in = [], 1
        for c_out in (channels, channels, 2 * channels, 2 * channels):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.PReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.cnn = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten())
        # Small initial weights: predictions start near the middle of both ranges.
        self.head = make_predictor_head(n_theta, c_in * 16, init_std=1e-3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio.mean(1), self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        return self.head(self.cnn(torch.log1p(spec.abs())[:, None]))


# The per-parameter validation errors, as SoundMatching logs them (one key per theta label).
AM, FM = "val/theta_l1/chirplet[0].theta_am[0]", "val/theta_l1/chirplet[0].theta_fm[0]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="signal length in samples (default 4096)")
    parser.add_argument("--sample-rate", type=float, default=4096.0, help="sample rate in Hz (default 4096)")
    parser.add_argument("--preset", default="fast_am_moderate_fm", help="chirplet AM/FM ranges (default fast_am_moderate_fm)")
    parser.add_argument("--max-shift", type=int, default=512, help="random time shift in samples (default 512)")
    parser.add_argument("--loss", default="scrapl", choices=["scrapl", "mss"], help="training loss (default scrapl)")
    parser.add_argument("--J", type=int, default=9, help="JTFS octaves, 2**J <= n (default 9: AM rates down to 2 Hz)")
    parser.add_argument("--train", type=int, default=256, help="training examples (default 256)")
    parser.add_argument("--val", type=int, default=64, help="validation examples (default 64)")
    parser.add_argument("--epochs", type=int, default=16, help="epochs (default 16)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="start learning rate (default 1e-3)")
    parser.add_argument("--lr-end", type=float, default=1e-4, help="final learning rate, linear decay (default 1e-4)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--root-dir", default=None, help="keep logs and the last checkpoint in this folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s:%(name)s:%(message)s")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # the chirplet's Gaussian window underflows; denormals are slow on CPUs
    torch.manual_seed(args.seed)

    train = make_data(args, args.train, seed=args.seed + 1)
    val = make_data(args, args.val, seed=args.seed + 2)
    synth = build_synth(args, shift_seed=args.seed + 3)
    encoder = SpectrogramEncoder(synth.n_theta)
    if args.loss == "scrapl":
        loss = SCRAPLLoss(shape=args.n, J=args.J, Q1=8, Q2=2, J_fr=3, Q_fr=2)
    else:
        loss = build_loss("mss")
    middle = normalized_param_error(torch.zeros_like(val[1]), val[1], reduce=False)
    print(f"{args.train} training / {args.val} validation chirplets, {args.n} samples at {args.sample_rate:g} Hz, "
          f"random shifts up to {args.max_shift} samples; encoder: {sum(p.numel() for p in encoder.parameters())} weights")
    print(f"loss: {type(loss).__name__} ({'SGD with P-Adam / P-SAGA' if args.loss == 'scrapl' else 'AdamW'}), "
          f"validation with MSS")
    print(f"always predicting the middle: AM {1000 * middle[0]:.0f}, FM {1000 * middle[1]:.0f} per mille")
    print(f"{'epoch':>5s} {'time':>7s} {'train loss':>11s} {'val MSS':>8s} {'AM err':>7s} {'FM err':>7s} (per mille)")

    def report(row):  # one row per epoch; the theta errors are already in per mille
        print(f"{row['epoch']:5d} {row['elapsed_s']:6.1f}s {row['train/loss']:11.4g} {row['val/mss']:8.4f} "
              f"{row[AM]:7.0f} {row[FM]:7.0f}", flush=True)

    result = train_predictor(encoder, synth, loss, train, val, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, lr_end=args.lr_end, val_metrics=("mss",), seed=args.seed,
                             accelerator="gpu" if args.device.startswith("cuda") else "cpu",
                             root_dir=args.root_dir, on_epoch=report, progress=args.progress)
    errors = result.history["val/theta_l1"]
    best = errors.index(min(errors))
    print(f"{result.steps} steps in {result.history['elapsed_s'][-1]:.1f} s; best validation parameter error "
          f"{min(errors):.0f} per mille (epoch {result.history['epoch'][best]})")
    if result.checkpoint:
        print(f"last checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
