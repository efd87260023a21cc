"""check_ids and check_lengths: the one place ids and lengths are validated."""

from __future__ import annotations

import pytest
import torch

from cadence.core.validation import IdRangeError, check_ids, check_lengths


def test_ids_outside_the_vocabulary_are_refused_with_the_likely_cause():
    with pytest.raises(
        IdRangeError, match=r"\[0, 9\] but the vocabulary is \[0, 8\).*another tokenizer"
    ):
        check_ids(torch.tensor([[0, 9]]), 8, name="tokens")
    with pytest.raises(IdRangeError, match="integer ids"):
        check_ids(torch.zeros(1, 2), 8, name="tokens")
    with pytest.raises(IdRangeError, match=r"add a batch axis"):
        check_ids(torch.zeros(3, dtype=torch.long), 8, name="tokens", ndim=2)


def test_padding_is_not_range_checked():
    ids = torch.tensor([[1, 2, 99], [3, 99, 99]])
    out = check_ids(ids, 8, name="tokens", lengths=torch.tensor([2, 1]))
    assert out.dtype == torch.long
    with pytest.raises(IdRangeError):
        check_ids(ids, 8, name="tokens", lengths=torch.tensor([3, 1]))


def test_a_caller_can_raise_its_own_error_class():
    class CodeError(ValueError):
        pass

    with pytest.raises(CodeError):
        check_ids(torch.tensor([[-1]]), 4, name="codes", error=CodeError)


def test_lengths_default_to_full_and_are_range_checked():
    assert check_lengths(None, 2, 5).tolist() == [5, 5]
    assert check_lengths(torch.tensor([1, 5]), 2, 5).tolist() == [1, 5]
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        check_lengths(torch.tensor([0, 5]), 2, 5, min_length=1)
    with pytest.raises(ValueError, match=r"\(b,\) = \(3,\)"):
        check_lengths(torch.tensor([1, 5]), 3, 5)
