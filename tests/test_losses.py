"""The class log-softmax and the class-label criteria against torch's own."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from sk_i2m2.nn.losses import ExpertsNLLLoss, ProductOfExpertsNLLLoss
from sk_i2m2.nn.product import CLASSES_FIRST_ENTRIES, FEW_CLASSES, class_log_proba, class_nll

SHAPES = [
    (4, 56, 2),  # below CLASSES_FIRST_ENTRIES: the plain softmax
    (15, 210, 10),  # a small cohort's linear solve: classes first
    (3, 40, FEW_CLASSES),  # as many classes as FEW_CLASSES: the plain softmax
    (300, 3),  # two axes
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_class_log_proba_is_log_softmax_with_its_gradient(shape, dtype):
    torch.manual_seed(0)
    logits = (3 * torch.randn(*shape, dtype=dtype)).requires_grad_()
    reference = logits.detach().clone().requires_grad_()
    ours, expected = class_log_proba(logits), F.log_softmax(reference, dim=-1)
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(ours, expected, **tolerance)
    weights = torch.randn(*shape, dtype=dtype)
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(logits.grad, reference.grad, **tolerance)


def test_classes_first_only_for_few_classes_and_enough_entries():
    def lays_out_classes_first(shape):
        logits = torch.zeros(shape)
        with mock.patch.object(torch.Tensor, "log_softmax", wraps=logits.log_softmax) as spy:
            class_log_proba(logits)
        return spy.call_count == 1 and spy.call_args.args == (-2,)

    assert lays_out_classes_first((CLASSES_FIRST_ENTRIES // 2, 2))
    assert not lays_out_classes_first((CLASSES_FIRST_ENTRIES // 4 - 1, 2))
    assert not lays_out_classes_first((CLASSES_FIRST_ENTRIES, FEW_CLASSES))
    with mock.patch("torch.compiler.is_compiling", return_value=True):
        assert not lays_out_classes_first((CLASSES_FIRST_ENTRIES, 2))


@pytest.mark.parametrize("shape", [(15, 210, 10), (4, 56, 2)])
def test_class_nll_is_cross_entropy_per_row(shape):
    torch.manual_seed(0)
    logits = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(0, shape[-1], (shape[-2],))
    expected = F.cross_entropy(
        logits.reshape(-1, shape[-1]), y.repeat(shape[0]), reduction="none"
    ).view(shape[:-1])
    torch.testing.assert_close(class_nll(logits, y), expected)


@pytest.mark.parametrize("class_weight", [None, torch.tensor([0.5, 2.0, 1.0])])
@pytest.mark.parametrize("sample_weight", [None, torch.linspace(0.0, 2.0, 200)])
def test_criteria_equal_torchs_weighted_cross_entropy(class_weight, sample_weight):
    torch.manual_seed(0)
    logits = torch.randn(4, 200, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (200,))
    weights = torch.ones(200, dtype=torch.float64)
    if class_weight is not None:
        weights = weights * class_weight.double()[y]
    if sample_weight is not None:
        weights = weights * sample_weight.double()

    def weighted_mean(logits_2d):
        losses = F.cross_entropy(logits_2d, y, reduction="none")
        return (losses * weights).sum() / weights.sum()

    stage_1 = ExpertsNLLLoss(class_weight)(logits, y, sample_weight=sample_weight)
    torch.testing.assert_close(stage_1, sum(weighted_mean(expert) for expert in logits))
    stage_2 = ProductOfExpertsNLLLoss(class_weight)(logits, y, sample_weight=sample_weight)
    torch.testing.assert_close(stage_2, weighted_mean(logits.sum(0)))
