"""Abstract transitions (StructShot's collapsed dependency transfer) and Viterbi decoding."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fewshot.transitions import AbstractTransitions, viterbi


def test_viterbi_hand_case_three_words_two_types():
    # labels: 0 = O, 1 = A, 2 = B. Scores are log-domain, added along a path.
    start = np.array([0.0, -1.0, -1.5])
    end = np.array([0.0, -0.5, -0.5])
    trans = np.array([[0.0, -2.0, -2.0],   # from O: to O, A, B
                      [-1.5, 0.0, -4.0],   # from A
                      [-1.0, -4.0, 0.0]])  # from B
    emissions = np.array([[-3.0, 0.0, -3.0],   # word 0: A is best
                          [0.0, -0.5, -3.0],   # word 1: O is best
                          [-1.0, -3.0, -0.5]])  # word 2: B is best alone
    # Word by word (argmax): A O B, whose path score is
    #   start[A] -1 + e0[A] 0 + T[A,O] -1.5 + e1[O] 0 + T[O,B] -2 + e2[B] -0.5 + end[B] -0.5 = -5.5.
    # Viterbi by hand, delta_t[j] = max_i delta_{t-1}[i] + T[i,j], plus e_t[j]:
    #   delta0 = start + e0 = (O -3, A -1, B -4.5)
    #   delta1[O] = max(-3+0, -1-1.5, -4.5-1) + 0 = -2.5 (from A); delta1[A] = max(-5, -1, -8.5) - 0.5 = -1.5
    #   (from A); delta1[B] = max(-5, -5, -4.5) - 3 = -7.5 (from B)
    #   delta2[O] = max(-2.5+0, -1.5-1.5, -7.5-1) - 1 = -3.5 (from O); delta2[A] = max(-4.5, -1.5, -11.5) - 3 =
    #   -4.5 (from A); delta2[B] = max(-4.5, -5.5, -7.5) - 0.5 = -5 (from O)
    #   + end: O -3.5, A -5, B -5.5 -> end in O; back: word 1 O (from O), word 0 A (delta1[O] came from A).
    # Best path A O O, score -3.5: the costly O -> B step and B's end outweigh word 2's emission.
    path = viterbi(emissions, trans, start, end)
    assert path.tolist() == [1, 0, 0]
    assert emissions.argmax(1).tolist() == [1, 0, 2]

    def score(p):
        return (start[p[0]] + end[p[-1]] + sum(emissions[t, y] for t, y in enumerate(p))
                + sum(trans[a, b] for a, b in zip(p, p[1:])))

    assert score([1, 0, 0]) == pytest.approx(-3.5) and score([1, 0, 2]) == pytest.approx(-5.5)
    assert max(itertools.product(range(3), repeat=3), key=score) == (1, 0, 0)  # brute force agrees


def test_viterbi_one_word_and_shape_errors():
    e = np.array([[-1.0, -0.2]])
    assert viterbi(e, np.zeros((2, 2)), np.array([0.0, -1.0]), np.zeros(2)).tolist() == [0]  # -1 + 0 > -0.2 - 1
    with pytest.raises(ValueError, match=r"do not fit 2 labels"):
        viterbi(e, np.zeros((3, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"emissions must be \(n_words >= 1"):
        viterbi(np.zeros((0, 2)), np.zeros((2, 2)), np.zeros(2), np.zeros(2))


CORPUS = [("O", "A", "A", "O", "B"),  # start->O, O->ent, same, ent->O, O->ent, ent->end
          ("A", "B", "O"),            # start->ent, other, ent->O, O->end
          ("O", "O"),                 # start->O, O->O, O->end
          ("C", "O")]                 # type C: skipped when types = {A, B}


def test_estimate_counts_exactly_on_a_tiny_corpus():
    tr = AbstractTransitions.estimate(CORPUS, types={"A", "B"})
    assert tr.n_sentences == 3
    assert tr.counts == {"start_o": 2, "start_entity": 1, "o_o": 1, "o_entity": 2, "o_end": 2, "entity_o": 2,
                         "entity_same": 1, "entity_other": 1, "entity_end": 1}
    # add-one smoothing within each row: start (3, 2) / 5; O (2, 3, 3) / 8; entity (3, 2, 2, 2) / 9
    assert (tr.start_o, tr.start_entity) == pytest.approx((0.6, 0.4))
    assert (tr.o_o, tr.o_entity, tr.o_end) == pytest.approx((2 / 8, 3 / 8, 3 / 8))
    assert (tr.entity_o, tr.entity_same, tr.entity_other, tr.entity_end) == pytest.approx((3 / 9, 2 / 9, 2 / 9, 2 / 9))

    episodic = AbstractTransitions.estimate(CORPUS, types={"A", "B"}, require_entity=True, smoothing=0)
    assert episodic.n_sentences == 2  # ("O", "O") has no entity
    assert episodic.counts["o_o"] == 0 and episodic.counts["start_o"] == 1 and episodic.o_end == pytest.approx(1 / 3)
    assert AbstractTransitions.estimate(CORPUS).counts["start_entity"] == 2  # no type filter: C counts


def test_expand_spreads_the_abstract_transitions_over_the_types():
    tr = AbstractTransitions.estimate(CORPUS, types={"A", "B"})
    start, trans, end = tr.expand(3)
    assert start.shape == (4,) and trans.shape == (4, 4) and end.shape == (4,)
    assert np.exp(start) == pytest.approx([0.6, 0.4 / 3, 0.4 / 3, 0.4 / 3])
    assert np.exp(trans[0]) == pytest.approx([2 / 8, 3 / 24, 3 / 24, 3 / 24])
    assert np.exp(trans[2]) == pytest.approx([3 / 9, 1 / 9, 2 / 9, 1 / 9])  # other entity: 2/9 over the 2 others
    assert np.exp(end) == pytest.approx([3 / 8, 2 / 9, 2 / 9, 2 / 9])
    assert np.exp(trans).sum(1) + np.exp(end) == pytest.approx(np.ones(4))  # each row with its end sums to 1
    one = tr.expand(1)[1]  # one type: no other type to go to, its mass has no cell
    assert np.exp(one[1]) == pytest.approx([3 / 9, 2 / 9])


def test_estimate_refuses_an_empty_selection():
    with pytest.raises(ValueError, match=r"no tagged sentence to estimate transitions from"):
        AbstractTransitions.estimate([("C",)], types={"A"})
