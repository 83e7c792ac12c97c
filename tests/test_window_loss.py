"""Perplexity windows by slices of positions: the same losses as transformers' ``labels=`` path."""

import copy

import pytest
import torch

from kick_checks.engine.window_loss import _split_model, window_losses


def _windows(model, count: int, length: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, model.config.vocab_size, (length,), generator=generator) for _ in range(count)]


def _labels_path(model, windows):
    with torch.no_grad():
        return [model(input_ids=window[None, :], labels=window[None, :]).loss.item() for window in windows]


@pytest.mark.parametrize("slice_positions", [1, 7, 33, 256])
def test_sliced_losses_equal_the_labels_path(tiny_loaded, slice_positions):
    model = tiny_loaded.model
    windows = _windows(model, 3, 33)  # 32 predicted positions: slices that divide them and ones that do not
    assert _split_model(model) is not None
    assert window_losses(model, windows, slice_positions) == pytest.approx(_labels_path(model, windows), rel=1e-6)


def test_a_model_with_a_logit_soft_cap_takes_the_labels_path(tiny_loaded):
    model = copy.deepcopy(tiny_loaded.model)
    model.config.final_logit_softcapping = 30.0
    assert _split_model(model) is None
    windows = _windows(model, 2, 17)
    assert window_losses(model, windows) == _labels_path(model, windows)
