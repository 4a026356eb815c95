"""bin/bench/alternating_rounds.py: variants take turns at the same steps, the order flipping every round."""
from __future__ import annotations

import pytest

from alternating_rounds import AlternatingRounds


def test_turns_give_every_variant_each_rounds_steps_and_flip_the_order():
    turns = [(name, list(steps)) for name, steps in AlternatingRounds(6, 3).turns({"a": 0, "b": 1}, start=2)]
    assert turns == [("a", [2, 3]), ("b", [2, 3]), ("b", [4, 5]), ("a", [4, 5]), ("a", [6, 7]), ("b", [6, 7])]


@pytest.mark.parametrize("steps, rounds", [(3, 2), (1, 2), (0, 1)])
def test_steps_must_be_a_positive_multiple_of_rounds(steps, rounds):
    with pytest.raises(ValueError, match=rf"--steps must be a positive multiple of --rounds \({rounds}\), got {steps}"):
        AlternatingRounds(steps, rounds)
