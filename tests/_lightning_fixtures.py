"""A tiny sound-matching setup for the training layer's tests: a chirplet data module and a small encoder."""
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from scrapl_graph.graph import GraphSynth
from scrapl_graph.processors import ChirpletSynth

N = 2048
SCRAPL_TINY = dict(shape=N, J=6, Q1=4, Q2=1, J_fr=2, Q_fr=1, n_theta=2)
JTFS_TINY = dict(J=6, Q1=4, Q2=1, J_fr=2, Q_fr=1)


def chirplet(seed, max_shift):
    return ChirpletSynth(sample_rate=8192, num_samples=N, f0_hz=512, max_shift=max_shift, seed=seed)


class TinyChirplets(pl.LightningDataModule):
    """24 chirplets (16 train, 4 val, 4 test) rendered on the device; example i always the same."""

    sample_rate = 8192

    def __init__(self, batch_size: int = 4, max_shift: int = 256):
        super().__init__()
        self.batch_size = batch_size
        self.render = chirplet(1, max_shift)
        self.synth = GraphSynth.chain({"chirplet": chirplet(2, max_shift)}, num_samples=N)
        self.theta = torch.randn(24, 2, generator=torch.Generator().manual_seed(0))

    def _loader(self, indices):
        items = [{"theta": self.theta[i], "index": torch.tensor(i)} for i in indices]
        # In order, split across ranks: rank r takes examples r, r + world, ...
        sampler = DistributedSampler(items, shuffle=False) if torch.distributed.is_initialized() else None
        # A loader's own generator: creating its iterator then draws nothing from torch's global one.
        return DataLoader(items, batch_size=self.batch_size, sampler=sampler, generator=torch.Generator())

    def train_dataloader(self):
        return self._loader(range(16))

    def val_dataloader(self):
        return self._loader(range(16, 20))

    def test_dataloader(self):
        return self._loader(range(20, 24))

    def on_after_batch_transfer(self, batch, dataloader_idx):
        theta = batch["theta"]
        with torch.no_grad():
            audio = self.render(None, theta_am=theta[:, :1], theta_fm=theta[:, 1:], seed=batch["index"] + 100)
        return {**batch, "audio": audio}

    def warmup_batches(self, n_examples, batch_size, device):
        batches = []
        for lo in range(0, n_examples, batch_size):
            index = torch.arange(lo, min(n_examples, lo + batch_size))
            batch = {"theta": self.theta[index].to(device), "index": index.to(device)}
            batches.append(self.on_after_batch_transfer(batch, 0))
        return batches


class TinyEncoder(nn.Module):
    """Strided convolution, average pooling, linear head: no batch statistics, no dropout."""

    def __init__(self, n_theta: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, 4, 64, stride=32), nn.ReLU(), nn.AdaptiveAvgPool1d(4), nn.Flatten(),
                                 nn.Linear(16, n_theta))

    def forward(self, x):
        return self.net(x)
