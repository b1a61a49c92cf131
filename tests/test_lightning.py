"""The training layer: SoundMatching with the loss's own optimizer, metrics, theta-IS warmup, results, DDP."""
import json
import os
import warnings

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from scrapl_graph import PathwiseAdamSAGA  # noqa: E402
from scrapl_graph.lightning import SoundMatching, ThetaISWarmup  # noqa: E402
from scrapl_graph.losses import scrapl_term_of  # noqa: E402
from _lightning_fixtures import JTFS_TINY, SCRAPL_TINY, TinyChirplets, TinyEncoder  # noqa: E402

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def trainer(tmp_path, **kwargs):
    defaults = dict(accelerator="cpu", logger=pl.loggers.CSVLogger(str(tmp_path)), enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, max_epochs=1)
    return pl.Trainer(**{**defaults, **kwargs})


def test_scrapl_fit_uses_the_optimizer_form_and_the_warmup(tmp_path):
    pl.seed_everything(0)
    data = TinyChirplets()
    model = SoundMatching(data.synth, loss={"class_path": "scrapl", "init_args": SCRAPL_TINY}, encoder=TinyEncoder(),
                          val_metrics=("mss", "jtfs"), metric_jtfs=JTFS_TINY)
    warmup = ThetaISWarmup(n_examples=2, batch_size=2, n_iter=2)
    run = trainer(tmp_path, callbacks=[warmup])
    run.fit(model, data)
    assert isinstance(run.optimizers[0], PathwiseAdamSAGA)
    assert model.loss.step_count == 4  # one SCRAPL iteration per training batch
    probs = model.loss.probs
    assert not torch.allclose(probs, torch.full_like(probs, 1 / len(probs)))  # theta-IS moved them
    folder = os.path.join(run.log_dir, "theta_is")
    assert os.path.isfile(os.path.join(folder, "probs.pt")) and warmup.seconds > 0
    assert os.path.getsize(os.path.join(folder, "path_probs.png")) > 0
    metrics = run.callback_metrics
    for key in ("val/theta_l1", "val/mss", "val/jtfs", "val/loss", "val/elapsed_s",
                "val/theta_l1/chirplet[0].theta_am[0]"):
        assert torch.isfinite(metrics[key]), key
    assert metrics["val/elapsed_s"] >= warmup.seconds  # the clock includes the warmup


def test_evaluation_is_repeatable_and_leaves_training_streams_alone(tmp_path):
    pl.seed_everything(0)
    data = TinyChirplets()
    model = SoundMatching(data.synth, loss="mss", encoder=TinyEncoder(), val_metrics=())
    run = trainer(tmp_path)
    first = run.validate(model, data, verbose=False)[0]
    state = torch.get_rng_state()
    source = data.synth.processors["chirplet"].random.generator.get_state()
    second = run.validate(model, data, verbose=False)[0]
    assert first == second  # the same time shifts at every evaluation
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(source, data.synth.processors["chirplet"].random.generator.get_state())


def test_test_results_file(tmp_path):
    pl.seed_everything(0)
    data = TinyChirplets()
    model = SoundMatching(data.synth, loss="mss", encoder=TinyEncoder(), test_metrics=("mss", "jtfs"),
                          metric_jtfs=JTFS_TINY)
    run = trainer(tmp_path)
    logged = run.test(model, data, verbose=False)[0]
    with open(os.path.join(run.log_dir, "test_results.json")) as f:
        results = json.load(f)
    assert results["n_examples"] == 4
    assert results["theta_l1"] == pytest.approx(logged["test/theta_l1"], rel=1e-5)
    assert set(results) >= {"loss", "mss", "jtfs", "theta_l1", "theta_l1/chirplet[0].theta_fm[0]"}
    assert results["encoder_weights"] == sum(p.numel() for p in model.encoder.parameters())


def test_linear_learning_rate_decay(tmp_path):
    pl.seed_everything(0)
    data = TinyChirplets()
    model = SoundMatching(data.synth, loss="mss", encoder=TinyEncoder(), lr=1e-3, lr_end=1e-4, val_metrics=())
    run = trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    run.fit(model, data)
    assert run.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_bad_settings():
    data = TinyChirplets()
    with pytest.raises(TypeError, match="synth"):
        SoundMatching(torch.nn.Identity(), loss="mss", encoder=TinyEncoder())
    with pytest.raises(ValueError, match="lr"):
        SoundMatching(data.synth, loss="mss", encoder=TinyEncoder(), lr=0)


class _RecordPaths(pl.Callback):
    def __init__(self, folder):
        self.folder, self.paths = folder, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.paths.append(scrapl_term_of(pl_module.loss).curr_path_idx)

    def on_fit_end(self, trainer, pl_module):
        with open(os.path.join(self.folder, f"paths_{trainer.global_rank}.json"), "w") as f:
            json.dump(self.paths, f)


SCRAPL_SPEC = {"class_path": "scrapl", "init_args": SCRAPL_TINY}
# SCRAPL plus an MSS whose gradient is added after P-Adam/P-SAGA: averaged over processes like SCRAPL's.
SUM_SPEC = {"class_path": "loss_sum", "init_args": {"terms": {"scrapl": SCRAPL_SPEC, "mss": {
    "class_path": "mss_linear", "init_args": {"fft_sizes": [64, 256], "hop_sizes": [16, 64], "win_lengths": [64, 256]}}},
    "weights": {"mss": 10.0}}}


def _ddp_run(tmp_path, devices, batch_size, loss=SCRAPL_SPEC):
    pl.seed_everything(0)
    data = TinyChirplets(batch_size=batch_size, max_shift=0)
    model = SoundMatching(data.synth, loss=loss, encoder=TinyEncoder(), lr=1e-3, val_metrics=())
    folder = tmp_path / f"run_{devices}"
    folder.mkdir()
    run = trainer(folder, devices=devices, strategy="ddp_spawn" if devices > 1 else "auto", max_epochs=2,
                  limit_val_batches=0, callbacks=[_RecordPaths(str(folder))], use_distributed_sampler=False)
    run.fit(model, data)
    paths = [json.load(open(folder / f"paths_{r}.json")) for r in range(devices)]
    return [p.detach().clone() for p in model.encoder.parameters()], paths


@pytest.mark.slow
@pytest.mark.parametrize("loss", [SCRAPL_SPEC, SUM_SPEC], ids=["scrapl", "sum"])
def test_two_processes_of_batch_b_equal_one_of_batch_2b(tmp_path, loss):
    # Spawned workers receive the model's tensors; through files, not inherited descriptors.
    previous = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        single, (single_paths,) = _ddp_run(tmp_path, 1, 4, loss)
        double, (paths_0, paths_1) = _ddp_run(tmp_path, 2, 2, loss)
    finally:
        torch.multiprocessing.set_sharing_strategy(previous)
    assert paths_0 == paths_1  # every rank uses rank 0's path at every step
    assert paths_0 == single_paths and len(set(paths_0)) > 1
    for a, b in zip(single, double):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_parameter_loss_trains_on_theta(tmp_path):
    pl.seed_everything(0)
    data = TinyChirplets()
    model = SoundMatching(data.synth, loss="p_loss", encoder=TinyEncoder(), lr=1e-2, val_metrics=())
    assert model.compares_theta
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)

    def train_error():
        with torch.no_grad():
            return float(model.loss(model(batch["audio"]), batch["theta"]))

    first = train_error()
    run = trainer(tmp_path, max_epochs=5, limit_val_batches=0)
    run.fit(model, data)
    assert isinstance(run.optimizers[0], torch.optim.AdamW)
    assert train_error() < 0.5 * first  # supervised on theta, the training error falls


def test_default_encoder_is_the_papers_sized_from_the_synth():
    from scrapl_graph.graph import GraphSynth
    from scrapl_graph.processors import ChirpletSynth

    synth = GraphSynth.chain({"chirplet": ChirpletSynth(sample_rate=8192, num_samples=8192, f0_hz=512, max_shift=0)},
                             num_samples=8192)
    model = SoundMatching(synth, loss="mss")
    assert sum(p.numel() for p in model.encoder.parameters()) == 604106  # the paper's 604K
    assert model(torch.randn(2, 1, 8192)).shape == (2, 2)


class _DropoutEncoder(torch.nn.Module):
    """TinyEncoder with dropout: its training steps draw from torch's global generator."""

    def __init__(self):
        super().__init__()
        self.body, self.drop = TinyEncoder(), torch.nn.Dropout(0.2)

    def forward(self, x):
        return self.body(self.drop(x))


def _resume_run(folder, max_steps, ckpt_path=None, every=None):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from scrapl_graph.lightning import SynthDataModule

    pl.seed_everything(0)
    data = SynthDataModule(task="chirplet", grid_size=4, n_seeds=1, batch_size=2, num_samples=2048,
                           max_shift=256, seed=3)
    model = SoundMatching(data.synth, loss={"class_path": "scrapl", "init_args": SCRAPL_TINY}, encoder=_DropoutEncoder(),
                          lr=1e-3, val_metrics=("mss",))
    callbacks = [ThetaISWarmup(n_examples=1, batch_size=1, n_iter=1, plot=False)]
    if every:
        callbacks.append(ModelCheckpoint(dirpath=str(folder), every_n_train_steps=every, save_top_k=-1))
    run = trainer(folder, max_steps=max_steps, max_epochs=-1, callbacks=callbacks, enable_checkpointing=bool(every),
                  num_sanity_val_steps=1)
    run.fit(model, data, ckpt_path=ckpt_path)
    return model, data


def test_resume_mid_epoch_is_bit_exact(tmp_path):
    whole, data = _resume_run(tmp_path / "whole", max_steps=7)
    batches_per_epoch = len(data.indices["train"]) // 2
    k = 4
    assert k % batches_per_epoch != 0 and k < batches_per_epoch < 7  # mid-epoch, an epoch end and validation after
    _resume_run(tmp_path / "first", max_steps=k, every=k)
    (ckpt,) = list((tmp_path / "first").glob("*.ckpt"))
    resumed, _ = _resume_run(tmp_path / "second", max_steps=7, ckpt_path=str(ckpt))
    for a, b in zip(whole.encoder.parameters(), resumed.encoder.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(whole.loss.probs, resumed.loss.probs)  # theta-IS probabilities from the checkpoint
    assert not torch.allclose(whole.loss.probs, torch.full_like(whole.loss.probs, 1 / len(whole.loss.probs)))
    assert whole.loss.step_count == resumed.loss.step_count == 7
    assert not (tmp_path / "second" / "lightning_logs" / "version_0" / "theta_is").exists()  # warmup skipped


def test_a_sum_with_scrapl_fits_logs_its_terms_and_warms_up_its_scrapl_term(tmp_path):
    pl.seed_everything(0)
    data = TinyChirplets()
    mss = {"class_path": "mss_linear", "init_args": {"fft_sizes": [64, 256], "hop_sizes": [16, 64],
                                                    "win_lengths": [64, 256]}}
    loss = {"class_path": "scrapl_graph.losses.LossSum",
            "init_args": {"terms": {"scrapl": {"class_path": "scrapl", "init_args": SCRAPL_TINY}, "mss": mss},
                          "weights": {"mss": 0.1}}}
    model = SoundMatching(data.synth, loss=loss, encoder=TinyEncoder(), val_metrics=("jtfs",))
    run = trainer(tmp_path, callbacks=[ThetaISWarmup(n_examples=2, batch_size=2, n_iter=2, plot=False)])
    run.fit(model, data)
    optimizer, scrapl = run.optimizers[0], model.loss.scrapl_term
    assert isinstance(optimizer, PathwiseAdamSAGA) and optimizer.side_gradients is model.loss.side_gradients
    assert optimizer.loss is scrapl and scrapl.step_count == 4
    assert not torch.allclose(scrapl.probs, torch.full_like(scrapl.probs, 1 / len(scrapl.probs)))  # theta-IS ran
    assert os.path.isfile(os.path.join(run.log_dir, "theta_is", "probs.pt"))
    assert model._metrics["val_2048"].distances["jtfs"].jtfs.J == SCRAPL_TINY["J"]  # the SCRAPL term's JTFS
    metrics = run.callback_metrics
    for key in ("train/loss", "train/loss/scrapl", "train/loss/mss", "val/loss", "val/loss/scrapl", "val/loss/mss",
                "val/jtfs"):
        assert torch.isfinite(metrics[key]), key
    torch.testing.assert_close(metrics["val/loss"], metrics["val/loss/scrapl"] + 0.1 * metrics["val/loss/mss"])
