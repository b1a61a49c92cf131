"""The fused first-order wavelet modulus and the matrix form of the time average, against their definitions."""
import numpy as np
import pytest
import torch

from scrapl_graph.jtfs import JTFS
from scrapl_graph.jtfs.averaging import MAX_COLUMNS, averaging_matrix
from scrapl_graph.jtfs.filters import center_frequencies
from scrapl_graph.jtfs.morlet import l1_norm, morlet_spectrum, morlet_unnormalized, periods, support_bins
from scrapl_graph.jtfs import streamed
from scrapl_graph.jtfs.wavelet_modulus import HalfSpectrumBuffer, _forward, wavelet_modulus_spectrum


@pytest.fixture
def band():
    gen = torch.Generator().manual_seed(0)
    n, length, m = 64, 12, 32
    x_half = torch.randn(2, 1, n // 2 + 1, dtype=torch.complex128, generator=gen).requires_grad_()
    idx = torch.arange(3, 3 + length)
    val = torch.randn(3, length, 2, dtype=torch.float64, generator=gen).requires_grad_()
    return x_half, idx, val, m


def test_fused_wavelet_modulus_equals_its_definition(band):
    x_half, idx, val, m = band
    torch.testing.assert_close(wavelet_modulus_spectrum(x_half, idx, val, m), _forward(x_half, idx, val, m),
                               rtol=1e-13, atol=1e-13)


def test_fused_wavelet_modulus_first_and_second_derivatives(band):
    x_half, idx, val, m = band
    fn = lambda a, b: wavelet_modulus_spectrum(a, idx, b, m)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x_half, val))
    # Hessian-vector products (theta-IS) differentiate the backward pass (random directions: fast mode).
    assert torch.autograd.gradgradcheck(fn, (x_half, val), fast_mode=True)


def test_fused_wavelet_modulus_is_finite_at_zero_input(band):
    _, idx, val, m = band
    x_half = torch.zeros(1, 1, 33, dtype=torch.complex128, requires_grad=True)
    wavelet_modulus_spectrum(x_half, idx, val.detach(), m).abs().sum().backward()
    assert torch.isfinite(torch.view_as_real(x_half.grad)).all()


def test_cut_wavelet_modulus_keeps_the_first_bins_and_their_gradient(band):
    x_half, idx, val, m = band
    weight = torch.randn(2, 3, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    full = wavelet_modulus_spectrum(x_half, idx, val, m)
    expected = torch.autograd.grad((full[..., :6] * weight.conj()).real.sum(), (x_half, val))
    # A kept gradient buffer, first written further than the cut: its stale bins must be zeroed.
    buffer = HalfSpectrumBuffer(torch.zeros(2, 3, m // 2 + 1, dtype=torch.complex128))
    buffer.take(m // 2)[..., : m // 2] = 1.0
    for grad_buffer in (None, buffer, buffer):
        cut = wavelet_modulus_spectrum(x_half, idx, val, m, grad_buffer=grad_buffer, bins=6)
        assert cut.shape == (2, 3, 6) and torch.equal(cut, full[..., :6])
        grads = torch.autograd.grad((cut * weight.conj()).real.sum(), (x_half, val))
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    fn = lambda a, b: wavelet_modulus_spectrum(a, idx, b, m, bins=5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x_half, val))
    assert torch.autograd.gradgradcheck(fn, (x_half, val), fast_mode=True)
    with pytest.raises(ValueError, match="bins"):
        wavelet_modulus_spectrum(x_half, idx, val, m, bins=m)


def test_paths_read_only_the_bins_they_keep():
    jtfs = JTFS(2048, J=6, Q1=4, Q2=2, J_fr=2, Q_fr=1, dtype=torch.float64)
    x = torch.randn(2, 2048, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    idxs = [3, jtfs.n_paths - 1]
    bins = jtfs.second_order_bins(idxs)
    full_bins = [jtfs.bank.length(f"psi1_{g}") // 2 ** k1 // 2 + 1 for g, (k1, _, _) in enumerate(jtfs.groups)]
    assert all(1 <= b <= f for b, f in zip(bins, full_bins)) and sum(bins) < sum(full_bins) / 3
    spectra, _ = jtfs.scalogram_spectra(x)
    full = jtfs.paths_from_spectra(spectra, idxs)
    cut = jtfs.paths_coefficients(x, idxs)
    assert torch.equal(cut, full)
    for a, b in zip(torch.autograd.grad(cut.square().sum(), x), torch.autograd.grad(full.square().sum(), x)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    cut_spectra, _ = jtfs.scalogram_spectra(x, bins=bins)
    with pytest.raises(ValueError, match="reads .* bins"):  # the first order reads other bins
        jtfs.first_order_from_spectra(cut_spectra, [0])
    with pytest.raises(ValueError, match="one count per resolution group"):
        jtfs.scalogram_spectra(x, bins=bins[:-1])


@pytest.mark.parametrize("factor, start, end", [(8, 1, 5), (1, 0, 16), (4, 2, 3)])
def test_averaging_matrix_equals_filter_then_decimate(factor, start, end):
    m = 64
    phi_hat = np.exp(-(np.fft.fftfreq(m) ** 2) / (2 * 0.02**2))
    z = np.random.default_rng(0).standard_normal((3, m))
    direct = np.fft.ifft(np.fft.fft(z) * phi_hat).real[:, ::factor][:, start:end]
    np.testing.assert_allclose(z @ averaging_matrix(phi_hat, factor, start, end), direct, atol=1e-12)


def test_averaging_matrix_declines_many_frames():
    assert averaging_matrix(np.ones(4 * MAX_COLUMNS), 1, 0, MAX_COLUMNS + 1) is None


def test_streamed_modulus_average_equals_its_definition(monkeypatch):
    monkeypatch.setattr(streamed, "BLOCK_ELEMENTS", 64)  # several time blocks, the last one partial
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(2, 3, 300, dtype=torch.complex128, generator=gen).requires_grad_()
    w = torch.randn(4, 3, dtype=torch.complex128, generator=gen).requires_grad_()
    a = torch.randn(300, 5, dtype=torch.float64, generator=gen)
    fn = lambda y, w: streamed.streamed_modulus_average(y, w, a)  # noqa: E731
    torch.testing.assert_close(fn(y, w), torch.matmul(torch.matmul(w, y).abs(), a), rtol=1e-12, atol=1e-12)
    # Random directions (fast mode): the full Jacobians of 1,800 complex inputs take half a minute.
    assert torch.autograd.gradcheck(fn, (y, w), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (y, w), fast_mode=True)


def test_paths_with_few_frames_take_the_streamed_route_and_match_the_fourier_route(monkeypatch):
    jtfs = JTFS(4096, J=8, Q1=4, Q2=2, J_fr=2, Q_fr=1, dtype=torch.float64)
    assert any(name.startswith("phi_matrix_") for name, _ in jtfs.named_buffers())
    x = torch.randn(2, 4096, dtype=torch.float64)
    streamed_paths = jtfs(x)
    for name in [name for name, _ in jtfs.named_buffers() if name.startswith("phi_matrix_")]:
        delattr(jtfs, name)  # back to the Fourier route everywhere
    torch.testing.assert_close(streamed_paths, jtfs(x), rtol=1e-10, atol=1e-12)


def test_fused_wavelet_modulus_backward_twice_with_retain_graph(band):
    x_half, idx, val, m = band
    out = wavelet_modulus_spectrum(x_half, idx, val, m).abs().sum()
    first = torch.autograd.grad(out, (x_half, val), retain_graph=True)
    second = torch.autograd.grad(out, (x_half, val))  # the first overwrote its buffer: recomputed
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_large_batches_are_sliced_without_changing_the_result(monkeypatch):
    from scrapl_graph.jtfs import bandlimited

    jtfs = JTFS(1024, J=4, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64)
    x = torch.randn(5, 1024, dtype=torch.float64, requires_grad=True)
    whole = jtfs.paths_coefficients(x, [0, jtfs.n_paths - 1])
    (g_whole,) = torch.autograd.grad(whole.sum(), x)
    monkeypatch.setattr(bandlimited, "SLICE_ELEMENTS", 1)  # one example per slice
    sliced = jtfs.paths_coefficients(x, [0, jtfs.n_paths - 1])
    (g_sliced,) = torch.autograd.grad(sliced.sum(), x)
    torch.testing.assert_close(sliced, whole, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_sliced, g_whole, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", [7, 8])
def test_rfft_backward_is_the_adjoint_for_odd_and_even_lengths(n):
    from scrapl_graph.jtfs.ops import rfft

    u = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rfft, (u,))
    g = torch.randn(3, n // 2 + 1, dtype=torch.complex128)
    ours, = torch.autograd.grad(rfft(u), u, g)
    native, = torch.autograd.grad(torch.fft.rfft(u), u, g)
    torch.testing.assert_close(ours, native, rtol=1e-12, atol=1e-12)


def test_fused_wavelet_modulus_with_a_bin_read_twice(band):
    # Mirrored bins above Nyquist read a half-spectrum bin that another kept bin reads too.
    x_half, _, val, m = band
    idx = torch.tensor([3, 4, 5, 6, 7, 8, 9, 10, 9, 8, 7, 6])
    fn = lambda a, b: wavelet_modulus_spectrum(a, idx, b, m)  # noqa: E731
    torch.testing.assert_close(fn(x_half, val), _forward(x_half, idx, val, m), rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(fn, (x_half, val))


def test_first_order_workspace_is_kept_and_changes_no_result(monkeypatch):
    from scrapl_graph.jtfs.bandlimited import BandLimitedBank

    jtfs = JTFS(1024, J=6, Q1=4, Q2=2, J_fr=2, Q_fr=1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(b, 1024, generator=gen, dtype=torch.float64) for b in (2, 3))
    kept = [jtfs(x1), jtfs(x2), jtfs(x1)]  # the second call has another batch size, the third reuses buffers
    assert {key[2] for key in jtfs.bank._workspaces} == {2, 3}
    monkeypatch.setattr(BandLimitedBank, "_workspace", lambda *args: (None, None))
    for out, x in zip(kept, (x1, x2, x1)):
        assert torch.equal(out, jtfs(x))


def test_kept_buffers_do_not_travel_with_a_pickled_transform():
    import pickle

    jtfs = JTFS(1024, J=6, Q1=4, Q2=2, J_fr=2, Q_fr=1)
    x = torch.randn(2, 1024)
    out = jtfs(x)
    assert jtfs.bank._workspaces
    copy = pickle.loads(pickle.dumps(jtfs))
    assert copy.bank._workspaces == {} and jtfs.bank._workspaces
    assert torch.equal(copy(x), out)


@pytest.mark.parametrize("support", [range(2, 12), range(5, 20), range(10, 60)],
                         ids=["one run", "two runs", "colliding"])
def test_band_limited_product_equals_dense_product_then_periodization(support):
    from scrapl_graph.jtfs.bandlimited import BandLimitedBank

    gen = torch.Generator().manual_seed(1)
    n, factor = 64, 4
    filters = np.zeros((2, n))
    filters[:, list(support)] = torch.rand(2, len(support), generator=gen, dtype=torch.float64).numpy() + 0.1
    bank = BandLimitedBank()
    bank.add("h", filters, factor, torch.float64)
    x = torch.randn(3, 1, n, dtype=torch.float64, generator=gen)
    dense = (torch.fft.fft(x) * torch.as_tensor(filters)).reshape(3, 2, factor, n // factor).sum(2) / factor
    torch.testing.assert_close(bank.apply(torch.fft.rfft(x), "h"), dense, rtol=1e-12, atol=1e-12)
    x_half = torch.fft.rfft(x).requires_grad_()
    assert torch.autograd.gradcheck(lambda z: bank.apply(z, "h"), (x_half,))


@pytest.mark.parametrize("N", [64, 1000, 16384])
def test_morlet_design_on_its_support_equals_the_whole_grid(N):
    # The design evaluates only the bins where a Gaussian can be non-zero in float64; the rest must be
    # exactly 0, so the filters are bit for bit those of the whole grid (and of the golden files).
    filters = list(center_frequencies(12, 8))[::5] + [(None, 0.1 / 2**12), (None, 0.3), (-0.2, 0.05), (0.45, 0.2)]
    for xi, sigma in filters:
        sigma_t = torch.tensor(sigma, dtype=torch.float64)
        xi_t = None if xi is None else torch.tensor(xi, dtype=torch.float64)
        whole = morlet_unnormalized(torch.arange(N), N, xi_t, sigma_t, periods(sigma))
        whole = whole / l1_norm(whole)
        torch.testing.assert_close(morlet_spectrum(N, xi, sigma), whole, rtol=0, atol=0, equal_nan=True)
    assert len(support_bins(16384, (0.3, 0.0), 1e-4, 2)) < 400  # a narrow filter costs its support
