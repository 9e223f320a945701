import pytest
import torch

from hsirestore.models.quantizer import MultiScaleResidualQuantizer, scale_sizes


pytestmark = pytest.mark.usefixtures("one_thread")


def test_scale_sizes_any_latent():
    assert scale_sizes((1, 2, 4, 8), 8, 8) == [(1, 1), (2, 2), (4, 4), (8, 8)]
    assert scale_sizes((1, 2, 4, 8), 16, 12) == [(2, 2), (4, 3), (8, 6), (16, 12)]
    assert scale_sizes((1, 2, 4), 1, 3)[-1] == (1, 3)


def test_bad_scales():
    with pytest.raises(ValueError):
        MultiScaleResidualQuantizer(4, 8, (2, 1))


def test_forward_shapes_loss_and_straight_through():
    torch.manual_seed(0)
    q = MultiScaleResidualQuantizer(6, 16, (1, 2, 4))
    f = torch.randn(2, 6, 4, 4, requires_grad=True)
    f_hat, loss, idx = q(f)
    assert f_hat.shape == f.shape and loss.ndim == 0 and loss.item() > 0
    assert [tuple(i.shape) for i in idx] == [(2, 1, 1), (2, 2, 2), (2, 4, 4)]
    assert all(i.dtype == torch.int64 and int(i.max()) < 16 for i in idx)
    (f_hat.sum() + loss).backward()
    assert f.grad is not None and q.codebook.weight.grad is not None
    # the straight-through value equals the rebuilt features
    rebuilt = q.indices_to_features(idx, (4, 4))
    torch.testing.assert_close(f_hat.detach(), rebuilt.detach(), atol=1e-5, rtol=1e-5)


def test_per_scale_ops_reproduce_forward():
    torch.manual_seed(1)
    q = MultiScaleResidualQuantizer(4, 8, (1, 2, 3, 6)).eval()
    f = torch.randn(1, 4, 6, 6)
    idx = q.features_to_indices(f)
    ins = q.teacher_inputs(idx, (6, 6))
    assert [tuple(t.shape[-2:]) for t in ins] == [(2, 2), (3, 3), (6, 6)]
    f_hat = torch.zeros(1, 4, 6, 6)
    for k, i in enumerate(idx):
        if k:
            torch.testing.assert_close(q.next_input(f_hat, k), ins[k - 1])
        f_hat = q.add_scale(f_hat, i, k)
    torch.testing.assert_close(f_hat, q.indices_to_features(idx))


def test_more_codes_and_scales_fit_better_and_dead_code_restart():
    torch.manual_seed(2)
    f = torch.randn(2, 8, 8, 8)
    q = MultiScaleResidualQuantizer(8, 64, (1, 2, 4, 8))
    opt = torch.optim.Adam(q.parameters(), lr=2e-2)
    first = None
    for step in range(40):
        if step % 20 == 0:
            q.restart_dead_codes(f)
        _, loss, _ = q(f)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first
    assert q.restart_dead_codes(f) >= 0 and float(q.usage.sum()) == 0
