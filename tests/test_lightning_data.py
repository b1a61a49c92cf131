"""Data modules of the Lightning layer: sizes, splits, thetas, determinism, the resumable order, recordings."""
import math
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from scipy.io import wavfile  # noqa: E402

from scrapl_graph.graph import GraphSynth  # noqa: E402
from scrapl_graph.lightning import AudioFolderDataModule, SynthDataModule  # noqa: E402
from scrapl_graph.lightning import recordings  # noqa: E402
from scrapl_graph.lightning.sampling import split_counts  # noqa: E402
from scrapl_graph.processors import CHIRPLET_PRESETS, ChirpletSynth  # noqa: E402

# Small settings keep rendering fast; the sizes tests use the paper's defaults (no rendering).
SMALL = {
    "chirplet": dict(task="chirplet", sample_rate=2048, num_samples=1024, max_shift=64, grid_size=3, n_seeds=2,
                     batch_size=4, synth_kwargs=dict(f0_hz=256.0)),
    "granular": dict(task="granular", sample_rate=2048, num_samples=1024, grid_size=3, n_seeds=2, batch_size=4,
                     synth_kwargs=dict(num_grains=8, grain_samples=128, f0_range_hz=(64.0, 512.0))),
    "drum": dict(task="drum", sample_rate=8000, num_samples=1024, max_shift=100, n_examples=12, splits=(8, 2, 2),
                 batch_size=4),
}


def small(task, **kwargs):
    return SynthDataModule(**{**SMALL[task], **kwargs})


def audio_by_index(dm, split, batch_size):
    dm.batch_size = batch_size
    loader = dm.train_dataloader() if split == "train" else dm._eval_loader(split)
    out = {}
    for batch in loader:
        batch = dm.prepare_batch(batch)
        assert set(batch) == {"audio", "theta", "index"}
        for i, a in zip(batch["index"].tolist(), batch["audio"]):
            out[i] = a
    return out


@pytest.mark.parametrize("task, total, sizes", [
    ("granular", 5120, (3070, 1025, 1025)),
    ("chirplet", 5120, (3070, 1025, 1025)),
    ("drum", 681, (425, 128, 128)),
])
def test_default_sizes_follow_the_paper(task, total, sizes):
    dm = SynthDataModule(task=task)
    assert dm.n_examples == total and tuple(len(dm.indices[s]) for s in ("train", "val", "test")) == sizes
    assert dm.n_theta == (14 if task == "drum" else 2) and len(dm.theta_labels) == dm.n_theta
    assert (dm.sample_rate, dm.num_samples) == ((44100, 44100) if task == "drum" else (8192, 32768))
    assert dm.batch_size == (8 if task == "drum" else 32)
    assert isinstance(dm.synth, GraphSynth) and dm.synth.num_samples == dm.num_samples


@pytest.mark.parametrize("task", ["chirplet", "drum"])
def test_splits_are_disjoint_cover_everything_and_follow_the_seed(task):
    dm = small(task)
    parts = [set(dm.indices[s].tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == dm.n_examples and set().union(*parts) == set(range(dm.n_examples))
    again, other = small(task), small(task, seed=1)
    assert all(torch.equal(dm.indices[s], again.indices[s]) for s in dm.indices)
    assert any(not torch.equal(dm.indices[s], other.indices[s]) for s in dm.indices)


def test_grid_points_stay_in_one_split():
    dm = SynthDataModule(task="granular", grid_size=8, n_seeds=5)
    for split, rows in dm.indices.items():
        points = {tuple(t) for t in dm.theta[rows].tolist()}
        assert len(rows) == 5 * len(points), split  # all 5 seeds of each point
    train = {tuple(t) for t in dm.theta[dm.indices["train"]].tolist()}
    assert not train & {tuple(t) for t in dm.theta[dm.indices["val"]].tolist()}


def test_split_counts_and_their_errors():
    assert split_counts(681, (425, 128, 128)) == (425, 128, 128)
    assert split_counts(10, (0.6, 0.2, 0.2)) == (6, 2, 2)
    for bad in [(0.5, 0.2, 0.2), (400, 128, 128), (0.6, 0.4), (-0.2, 0.6, 0.6), (0, 0.5, 0.5), (0, 340, 341)]:
        with pytest.raises(ValueError, match="splits"):
            split_counts(680, bad)
    with pytest.raises(ValueError, match="multiples of 2"):
        small("chirplet", splits=(9, 5, 4))
    assert len(small("chirplet", splits=(10, 4, 4)).indices["train"]) == 10


@pytest.mark.parametrize("preset", sorted(CHIRPLET_PRESETS))
def test_chirplet_grid_covers_the_preset_ranges_log_uniformly(preset):
    dm = SynthDataModule(task="chirplet", chirplet_preset=preset, grid_size=4, n_seeds=3)
    phys = dm.synth.processors["chirplet"].physical(dm.theta[:, 0], dm.theta[:, 1])
    for name, key in (("theta_am", "am_range"), ("theta_fm", "fm_range")):
        lo, hi = CHIRPLET_PRESETS[preset][key]
        values, counts = torch.unique(phys[name], return_counts=True)
        assert len(values) == 4 and (counts == 4 * 3).all()  # each grid value for every other value and seed
        expected = torch.exp(math.log(lo) + torch.arange(1, 5) / 5 * math.log(hi / lo))
        torch.testing.assert_close(values, expected.float(), rtol=1e-5, atol=0)


def test_uniform_thetas_lie_in_range_and_do_not_depend_on_the_count():
    dm, more = small("drum"), small("drum", n_examples=20, splits=(0.6, 0.2, 0.2))
    torch.testing.assert_close(dm.theta, more.theta[:12], rtol=0, atol=0)
    drum = dm.synth.processors["drum"]
    for name, value in drum.physical(*more.theta.T).items():
        rng = drum.ranges[name]
        assert rng.minimum <= value.min() and value.max() <= rng.maximum, name
    unit = torch.sigmoid(SynthDataModule(task="drum", n_examples=400, splits=(1.0, 0, 0)).theta)
    assert 0.45 < unit.mean() < 0.55 and unit.min() < 0.02 and unit.max() > 0.98


def test_preset_thetas_scatter_around_the_presets():
    dm = small("drum", theta_sampling="presets", preset_spread=0.1)
    drum = dm.synth.processors["drum"]
    centres = torch.cat([dm.synth.layout.to_theta({"drum": drum.preset_parameters(n)})
                         for n in ("kick", "snare", "tom", "hihat")])
    nearest = torch.cdist(dm.theta, centres).min(dim=1).values
    assert (nearest < 1.0).all() and (nearest > 0).all()


@pytest.mark.parametrize("task", sorted(SMALL))
def test_examples_are_the_same_whatever_the_batching(task):
    dm = small(task)
    by_3, by_5 = audio_by_index(dm, "val", 3), audio_by_index(dm, "val", 5)
    fresh = audio_by_index(small(task), "val", 2)
    assert set(by_3) == set(by_5) == set(fresh) == set(dm.indices["val"].tolist())
    for i in by_3:
        assert torch.equal(by_3[i], by_5[i]) and torch.equal(by_3[i], fresh[i])
    shuffled = audio_by_index(dm, "train", 4)
    for i in shuffled:
        assert torch.equal(shuffled[i], dm.render([i])[0])


@pytest.mark.parametrize("task", sorted(SMALL))
def test_rendered_audio_is_finite_and_not_silent(task):
    dm = small(task)
    audio = dm.render(torch.arange(dm.n_examples))
    assert audio.shape == (dm.n_examples, 1, dm.num_samples) and torch.isfinite(audio).all()
    assert (audio.pow(2).mean(dim=-1) > 1e-8).all()


@pytest.mark.parametrize("task", sorted(SMALL))
def test_meso_synth_draws_afresh_but_targets_repeat(task):
    dm = small(task)
    theta = dm.theta[:4]
    assert not torch.equal(dm.synth(theta), dm.synth(theta))
    assert torch.equal(dm.render(torch.arange(4)), dm.render(torch.arange(4)))
    micro = small(task, meso=False)
    assert torch.equal(micro.synth(theta), micro.synth(theta))
    assert len(micro.synth.processors) == 1  # no time-shift node


def test_micro_chirplet_targets_match_the_model_synth_and_graph_rendering():
    dm = small("chirplet", meso=False)
    torch.testing.assert_close(dm.render(torch.arange(6)), dm.synth(dm.theta[:6]), rtol=0, atol=1e-6)
    peak = dm.render(torch.arange(6)).abs()[:, 0].argmax(dim=-1)
    assert ((peak - dm.num_samples // 2).abs() < 64).all()  # centred: no time shift


def test_meso_drum_onsets_keep_their_attack():
    dm = small("drum")
    audio = dm.render(torch.arange(dm.n_examples))[:, 0]
    onsets = (audio.abs() > 1e-6).float().argmax(dim=-1)
    assert (onsets <= 2 * dm.max_shift).all() and onsets.unique().numel() > 1


def test_training_order_is_seeded_per_epoch_and_covers_the_split():
    dm = small("drum", batch_size=2)
    loader = dm.train_dataloader()
    order = lambda: torch.cat([b["index"] for b in loader])  # noqa: E731
    first = order()
    assert sorted(first.tolist()) == sorted(dm.indices["train"].tolist())
    assert torch.equal(first, order())
    loader.sampler.set_epoch(1)
    second = order()
    assert not torch.equal(first, second) and sorted(first.tolist()) == sorted(second.tolist())
    assert torch.equal(second, torch.cat(_epoch_order(small("drum", batch_size=2), 1)))  # a rerun's epoch 1


def _epoch_order(dm, epoch):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [b["index"] for b in loader]


def test_training_position_survives_a_state_round_trip():
    dm = small("chirplet", batch_size=2)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    full = [b["index"] for b in loader]
    it = iter(loader)
    seen = [next(it)["index"] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(seen, full))
    state, loader_state = dm.state_dict(), loader.state_dict()
    assert state["epoch"] == loader_state["epoch"] == 3 and state["batches"] == loader_state["batches"] == 2

    resumed = small("chirplet", batch_size=2)
    resumed.load_state_dict(state)
    rest = resumed.train_dataloader()
    rest.sampler.set_epoch(3)  # what Lightning does when the epoch restarts
    assert rest.state_dict()["batches"] == 2
    remaining = [b["index"] for b in rest]
    assert len(remaining) == len(full) - 2
    assert all(torch.equal(a, b) for a, b in zip(remaining, full[2:]))
    assert resumed.state_dict()["batches"] == len(full)

    other = small("chirplet", batch_size=2).train_dataloader()
    other.load_state_dict(state)
    other.sampler.set_epoch(4)  # a new epoch drops the pending position
    assert len([b for b in other]) == len(full)
    with pytest.warns(UserWarning, match="ignoring"):
        small("chirplet", batch_size=4).train_dataloader().load_state_dict(state)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="piano"), "unknown task"),
    (dict(task="chirplet", chirplet_preset="fast"), "unknown chirplet preset"),
    (dict(task="drum", grid_size=4), "grid_size"),
    (dict(task="granular", n_examples=10), "n_examples"),
    (dict(task="granular", theta_sampling="presets"), "does not apply"),
    (dict(task="drum", am_range=(1, 2)), "chirplet task only"),
    (dict(task="drum", num_samples=3000, max_shift=2048), "num_samples"),
    (dict(task="drum", splits=(0.6, 0.2)), "splits"),
    (dict(task="chirplet", synth_kwargs=dict(max_shift=3)), "own arguments"),
])
def test_synth_module_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SynthDataModule(**kwargs)


def test_loader_errors():
    dm = small("drum")
    with pytest.raises(ValueError, match="unknown split"):
        dm.dataset("training")
    with pytest.raises(ValueError, match="fewer than batch_size"):
        small("drum", batch_size=9).train_dataloader()
    assert len(list(small("drum", batch_size=9, drop_last=False).train_dataloader())) == 1
    with pytest.raises(TypeError, match="seed"):
        small("drum", seed=1.5)


def test_custom_chirplet_ranges_replace_the_preset():
    dm = SynthDataModule(task="chirplet", am_range=(3.0, 5.0), fm_range=(1.0, 2.0), grid_size=2, n_seeds=1)
    chirplet = dm.synth.processors["chirplet"]
    assert (chirplet.am_range.minimum, chirplet.am_range.maximum) == (3.0, 5.0)
    assert (chirplet.fm_range.minimum, chirplet.fm_range.maximum) == (1.0, 2.0)


def test_a_config_parser_builds_the_module():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(SynthDataModule, "data")
    cfg = parser.parse_object({"data": {"task": "drum", "n_examples": 12, "splits": [8, 2, 2], "seed": 3}})
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    dm = instantiate(cfg).data
    assert isinstance(dm, SynthDataModule) and dm.n_theta == 14 and len(dm.indices["train"]) == 8


# Recordings ---------------------------------------------------------------

def write(path, rate, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(str(path), rate, data)
    return path


def sine(rate, seconds, hz, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "one_shots"
    write(root / "a_mono_float.wav", 8000, sine(8000, 0.5, 440))  # longer than 2000 samples: cropped
    left, right = sine(4000, 0.1, 200), np.zeros(400, np.float32)  # 400 samples at 4 kHz: resampled, padded
    write(root / "sub" / "b_stereo_int16.wav", 4000, (np.stack([left, right], 1) * 32767).astype(np.int16))
    for i in range(4):
        write(root / "sub" / "deeper" / f"c{i}.WAV", 8000, sine(8000, 0.05, 100 * (i + 1)))
    (root / "notes.txt").write_text("not audio")
    return root


def test_folder_one_shots_are_mono_resampled_padded_and_cropped(folder):
    dm = AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(4, 1, 1), batch_size=2,
                               synth="chirplet", max_shift=0, synth_kwargs=dict(f0_hz=256.0))
    names = [p.relative_to(folder).as_posix() for p in dm.files]
    assert names == ["a_mono_float.wav", "sub/b_stereo_int16.wav"] + [f"sub/deeper/c{i}.WAV" for i in range(4)]
    audio = dm.audio
    assert audio.shape == (6, 1, 2000)
    torch.testing.assert_close(audio[0, 0], torch.from_numpy(sine(8000, 0.5, 440)[:2000]))
    stereo = audio[1, 0]
    assert stereo[:800].abs().max() == pytest.approx(0.25, abs=0.02)  # mean of a 0.5 sine and silence
    assert stereo[850:].abs().max() == 0  # 400 samples at 4 kHz are 800 at 8 kHz, then zeros
    spectrum = torch.fft.rfft(stereo[:800])
    assert int(spectrum.abs().argmax()) == 200 * 800 // 8000  # the sine keeps its 200 Hz
    assert sorted(sum((dm.indices[s].tolist() for s in dm.indices), [])) == list(range(6))
    batch = dm.prepare_batch(next(iter(dm.train_dataloader())))
    assert set(batch) == {"audio", "index"} and batch["audio"].shape == (2, 1, 2000)
    assert dm.n_theta == 2 and dm.theta_labels[0].startswith("chirplet")


def test_folder_files_are_read_once(folder, monkeypatch):
    reads = []
    original = recordings.read_audio
    monkeypatch.setattr(recordings, "read_audio", lambda p: reads.append(p) or original(p))
    dm = AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(4, 1, 1), batch_size=2,
                               max_shift=200)
    assert dm.pad_start == 200 and not reads  # drum synth in the meso setting: recordings delayed by max_shift
    dm.setup("fit")
    list(dm.train_dataloader()), list(dm.val_dataloader())
    dm.setup("test")
    assert len(reads) == 6
    assert (dm.audio[:, 0, :200] == 0).all()


def test_folder_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError):
        AudioFolderDataModule(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .wav/.flac files"):
        AudioFolderDataModule(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="sum"):
        AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(4, 1, 2), max_shift=0)
    with pytest.raises(ValueError, match="the synth renders"):
        AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(4, 1, 1),
                              synth=GraphSynth.chain({"c": ChirpletSynth(8000, 1000, max_shift=0)}, 1000))
    with pytest.raises(ValueError, match="Hz"):
        AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(4, 1, 1),
                              synth=GraphSynth.chain({"c": ChirpletSynth(4000, 2000, f0_hz=256, max_shift=0)}, 2000))
    with pytest.raises(TypeError, match="GraphSynth"):
        AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(4, 1, 1), synth=3)
    for name, data in (("empty.wav", np.zeros(0, np.float32)), ("nan.wav", np.full(10, np.nan, np.float32))):
        path = write(tmp_path / "bad" / name, 8000, data)
        with pytest.raises(ValueError, match="no samples|NaN"):
            recordings.load_one_shot(path, 8000, 100)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEnot really")
    dm = AudioFolderDataModule(str(folder), sample_rate=8000, num_samples=2000, splits=(5, 1, 1), max_shift=0)
    with pytest.raises(ValueError, match="could not read audio file .*broken.wav"):
        dm.setup()


def test_flac_without_soundfile_names_the_package(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "soundfile" else real_import(name, *a, **k))
    (tmp_path / "x.flac").write_bytes(b"fLaC")
    with pytest.raises(ImportError, match="soundfile"):
        AudioFolderDataModule(str(tmp_path))


# Lightning ------------------------------------------------------------------

def _fit(dm, tmp_path, max_steps=-1, ckpt=None, every=3):
    import lightning.pytorch as pl

    seen = []

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, batch_idx):
            assert batch["audio"].shape[1:] == (1, dm.num_samples) and batch["theta"].shape[1] == dm.n_theta
            seen.append(batch["index"].tolist())
            return self.w * batch["audio"].mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    callback = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every, save_top_k=-1)
    trainer = pl.Trainer(max_epochs=2, max_steps=max_steps, callbacks=[callback], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Recorder(), datamodule=dm, ckpt_path=ckpt)
    return seen


@pytest.mark.parametrize("cut", [3, 5])  # mid-epoch, and on the last batch of the first epoch
def test_lightning_resumes_in_the_same_order(tmp_path, cut):
    data = lambda: small("drum", n_examples=30, splits=(20, 5, 5))  # noqa: E731  (5 batches of 4 per epoch)
    full = _fit(data(), tmp_path / "full")
    assert len(full) == 10 and full[:5] != full[5:]
    _fit(data(), tmp_path / "cut", max_steps=cut, every=cut)
    ckpt = torch.load(tmp_path / "cut" / f"epoch=0-step={cut}.ckpt", weights_only=False)
    assert ckpt["SynthDataModule"]["batches"] == cut
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == cut
    rest = _fit(data(), tmp_path / "rest", ckpt=str(tmp_path / "cut" / f"epoch=0-step={cut}.ckpt"), every=cut)
    assert rest == full[cut:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", sorted(SMALL))
def test_targets_render_alike_on_the_gpu(task):
    dm = small(task)
    batch = next(iter(dm.train_dataloader()))
    on_gpu = dm.prepare_batch(batch, torch.device("cuda"))
    assert on_gpu["audio"].device.type == "cuda" and on_gpu["theta"].device.type == "cuda"
    torch.testing.assert_close(on_gpu["audio"].cpu(), dm.prepare_batch(batch)["audio"], rtol=1e-3, atol=1e-4)
