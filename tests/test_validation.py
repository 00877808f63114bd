"""Argument validation (estimators/validation.py): the switch, as_int, and messages that name the argument."""
import numpy as np
import pytest
import torch

import estimators
from estimators import Posteriors, validation
from estimators.validation import as_float_tensor, as_int, check_finite, check_points, check_same_shape


@pytest.fixture
def nan_tensor():
    t = torch.zeros(3, 2)
    t[2, 1] = float("nan")
    return t


def test_the_switch_is_exported_and_on_by_default():
    assert estimators.set_validate_args is validation.set_validate_args
    assert estimators.validate_args is validation.validate_args
    assert validation.validating()


def test_switch_turns_off_nan_checks_but_not_shape_checks(nan_tensor):
    with pytest.raises(ValueError, match=r"^mu holds 1 non-finite \(NaN\) value\(s\), first at index \(2, 1\)"):
        check_finite("mu", nan_tensor)
    with validation.validate_args(False):
        assert not validation.validating()
        check_finite("mu", nan_tensor)  # no value check
        Posteriors(nan_tensor, torch.zeros(3, 2))
        with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
            Posteriors(torch.zeros(3, 2), torch.zeros(3, 3))
        with pytest.raises(ValueError, match="z must be 2-dimensional"):
            as_float_tensor("z", torch.zeros(3), ndim=2)
        with pytest.raises(TypeError, match="z must have a floating dtype"):
            as_float_tensor("z", torch.zeros(3, dtype=torch.long))
        with pytest.raises(ValueError, match="z has 3 latent dimensions but mu and logvar have 2"):
            check_points(torch.zeros(1, 3), torch.zeros(2, 2), torch.zeros(2, 2))
    assert validation.validating()  # restored
    with pytest.raises(ValueError):
        check_finite("mu", nan_tensor)


def test_context_manager_restores_after_an_exception_and_nests(nan_tensor):
    with pytest.raises(RuntimeError):
        with validation.validate_args(False):
            raise RuntimeError
    assert validation.validating()
    with validation.validate_args(False):
        with validation.validate_args(True):
            with pytest.raises(ValueError):
                check_finite("x", nan_tensor)
        check_finite("x", nan_tensor)


def test_set_validate_args_is_global(nan_tensor):
    try:
        validation.set_validate_args(False)
        assert not validation.validating()
        check_finite("x", nan_tensor)
    finally:
        validation.set_validate_args(True)
    assert validation.validating()


def test_infinite_values_are_named_as_such():
    with pytest.raises(ValueError, match=r"^logvar holds 2 non-finite \(infinite\) value\(s\), first at index \(0,\)"):
        check_finite("logvar", torch.tensor([float("inf"), 0.0, -float("inf")]))


@pytest.mark.parametrize("value,want", [(3, 3), (np.int64(4), 4), (torch.tensor(5), 5), (np.int32(0), 0)])
def test_as_int_accepts_integers(value, want):
    out = as_int("n", value)
    assert out == want and type(out) is int


@pytest.mark.parametrize("value,exc,match", [
    (True, TypeError, r"^n must be an int, got bool$"),
    (2.0, TypeError, r"^n must be an int, got float$"),
    ("3", TypeError, r"^n must be an int, got str$"),
    (torch.tensor(2.0), TypeError, r"^n must be an int, got Tensor$"),
    (None, TypeError, r"^n must be an int, got NoneType$"),
    (0, ValueError, r"^n must be >= 1, got 0$"),
])
def test_as_int_rejects_naming_the_argument(value, exc, match):
    with pytest.raises(exc, match=match):
        as_int("n", value, 1)


def test_messages_name_the_argument():
    with pytest.raises(TypeError, match=r"^field mu must be a tensor or array of floats, got object"):
        as_float_tensor("field mu", object())
    with pytest.raises(TypeError, match=r"^logvar must have a floating dtype"):
        as_float_tensor("logvar", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"^a and b must have the same shape, got \(2,\) and \(3,\)"):
        check_same_shape("a", torch.zeros(2), "b", torch.zeros(3))
    with pytest.raises(ValueError, match=r"^mu and logvar must hold at least one posterior"):
        check_points(torch.zeros(1, 2), torch.zeros(0, 2), torch.zeros(0, 2))
    assert as_float_tensor("x", [1.0, 2.0]).dtype == torch.float32  # lists and arrays become tensors


def test_check_points_promotes_to_a_common_dtype():
    z, mu, lv = check_points(torch.zeros(2, 3), torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3))
    assert z.dtype == mu.dtype == lv.dtype == torch.float64


def test_as_posteriors_checks_the_pair_and_allows_an_empty_field():
    from estimators.validation import as_posteriors
    mu, lv = as_posteriors([[0.0, 1.0]], torch.zeros(1, 2, dtype=torch.float64))
    assert mu.shape == lv.shape == (1, 2) and mu.is_floating_point()
    with pytest.raises(ValueError, match=r"mu and logvar must have the same shape, got \(1, 2\) and \(1, 3\)"):
        as_posteriors(torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="logvar holds 1 non-finite \\(NaN\\)"):
        as_posteriors(torch.zeros(1, 2), torch.tensor([[0.0, float("nan")]]))
    assert as_posteriors(torch.zeros(0, 2), torch.zeros(0, 2))[0].shape == (0, 2)
