"""Phone purity, mutual information and frame labels on cases whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from cadence.semantic import (
    SILENCE,
    contingency,
    edit_distance,
    frame_labels,
    phoneme_error_rate,
    scores_from_counts,
    strip_stress,
    token_phoneme_scores,
)


def test_frame_labels_take_the_phoneme_under_each_frame_centre():
    # 50 Hz: frame j is centred at 0.02 j + 0.01 s
    labels = frame_labels(["k", "ˈæ", "t"], [0.1, 0.2, 0.25], 16)
    assert labels[:5] == [SILENCE] * 5  # centres 0.01 .. 0.09 lie before the first start
    assert labels[5:10] == ["k"] * 5  # 0.11 .. 0.19
    assert labels[10:12] == ["æ"] * 2  # 0.21, 0.23; stress stripped
    assert labels[12:] == ["t"] * 4  # the last phoneme runs to the end
    assert frame_labels(["a", "b"], [0.0, 0.05], 4, silence=None)[0] == "a"
    assert frame_labels(["a"], [0.1], 3, silence=None) == [None, None, None]
    # a symbol made only of a stress mark continues the phoneme before it
    assert frame_labels(["a", "ˈ", "b"], [0.0, 0.02, 0.04], 3) == ["a", "a", "b"]
    with pytest.raises(ValueError, match="start times"):
        frame_labels(["a"], [0.0, 0.1], 3)
    with pytest.raises(ValueError, match="non-decreasing"):
        frame_labels(["a", "b"], [0.2, 0.1], 3)


def test_tokens_that_name_the_phoneme_are_pure_and_carry_all_its_information():
    labels = [["a", "b", "c", "d", "a", "a"]]
    scores = token_phoneme_scores([torch.tensor([0, 1, 2, 3, 0, 0])], labels)
    assert scores.purity == 1.0 and scores.cluster_purity == 1.0
    # H(phoneme) of (1/2, 1/6, 1/6, 1/6)
    entropy = -(0.5 * math.log2(0.5) + 3 * (1 / 6) * math.log2(1 / 6))
    assert scores.phoneme_entropy == pytest.approx(entropy)
    assert scores.mutual_information == pytest.approx(entropy)
    assert scores.normalized_mutual_information == pytest.approx(1.0)
    assert scores.frames == 6 and scores.tokens_used == 4


def test_independent_tokens_carry_no_information():
    # counts = outer product: token and phoneme independent by construction
    counts = torch.outer(torch.tensor([1, 2, 3]), torch.tensor([4, 1, 1, 2]))
    scores = scores_from_counts(counts)
    assert scores.mutual_information == pytest.approx(0.0, abs=1e-12)
    # each token's best phoneme is the most frequent one overall, P = 4 / 8
    assert scores.purity == pytest.approx(0.5)
    assert scores.cluster_purity == pytest.approx(0.5)  # each phoneme's best token, P = 3 / 6


def test_a_token_per_pair_of_phonemes_carries_one_bit_of_two():
    phonemes = ["a", "b", "c", "d"] * 5
    tokens = torch.tensor([0, 0, 1, 1] * 5)
    scores = token_phoneme_scores([tokens], [phonemes], codebook_size=8)
    assert scores.mutual_information == pytest.approx(1.0)
    assert scores.phoneme_entropy == pytest.approx(2.0)
    assert scores.normalized_mutual_information == pytest.approx(0.5)
    assert scores.purity == pytest.approx(0.5) and scores.cluster_purity == pytest.approx(1.0)
    assert scores.tokens_used == 2
    assert set(scores.to_dict()) >= {
        "purity",
        "mutual_information",
        "normalized_mutual_information",
    }


def test_unlabelled_frames_are_skipped_and_shapes_are_checked():
    with_gaps = token_phoneme_scores([torch.tensor([0, 5, 1, 5])], [["a", None, "b", None]])
    assert with_gaps.frames == 2 and with_gaps.purity == 1.0
    with pytest.raises(ValueError, match="frame labels"):
        token_phoneme_scores([torch.tensor([0, 1])], [["a"]])
    with pytest.raises(ValueError, match="no labelled frames"):
        token_phoneme_scores([torch.tensor([0])], [[None]])
    counts = contingency(
        torch.tensor([0, 1, 1]), torch.tensor([1, 0, 0]), num_tokens=2, num_labels=2
    )
    assert counts.tolist() == [[0, 1], [2, 0]]


def test_phoneme_error_rate_and_stress():
    assert strip_stress(["k", "ˈæ", "ˌɔːɹ", "ˈ"]) == ["k", "æ", "ɔːɹ"]
    with pytest.raises(TypeError, match="sequence of symbols"):
        strip_stress("kæt")
    assert edit_distance(list("kitten"), list("sitting")) == 3
    refs = [["k", "ˈæ", "t"], ["d", "ˈɔ", "ɡ"]]
    assert phoneme_error_rate(refs, [["k", "æ", "t"], ["d", "ɔ", "ɡ"]]) == 0.0
    assert phoneme_error_rate(refs, [["k", "ɑ", "t"], []]) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="no phonemes"):
        phoneme_error_rate([[]], [["a"]])
