"""Augmentation: text edits keep at least one token and are reproducible from the generator;
image jitter keeps shape and dtype; rotation classes are true rotations in the train split only."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.augment import ImageAugmenter, TextAugmenter, make_augmenter, with_rotations
from fewshot.data import FewShotDataset
from fewshot.inputs import entity_spans

TEXT = "the quick brown fox jumps over the lazy dog"


def test_text_augmentation_is_reproducible_and_keeps_tokens():
    aug = TextAugmenter(p_delete=0.3, p_swap=0.3, p_mask=0.3, mask_token="[MASK]")
    a = aug([TEXT] * 20, np.random.default_rng(0))
    b = aug([TEXT] * 20, np.random.default_rng(0))
    assert a == b and len(set(a)) > 10
    words = set(TEXT.split()) | {"[MASK]"}
    for out in a:
        assert out.split() and set(out.split()) <= words
    assert any("[MASK]" in out for out in a)
    assert any(len(out.split()) < 9 for out in a)
    heavy = TextAugmenter(p_delete=0.99, p_swap=0.0, p_mask=0.0)
    assert all(len(heavy.one(TEXT, np.random.default_rng(i)).split()) >= 1 for i in range(50))
    assert TextAugmenter().one("single", np.random.default_rng(0)) == "single"
    with pytest.raises(ValueError, match=r"p_delete must be in \[0, 1\)"):
        TextAugmenter(p_delete=1.5)


def test_text_augmentation_keeps_marked_entities_whole_and_in_place():
    # test-time fine-tuning and training augmentation on FewRel's entity-marked texts: entity pooling must still
    # find each entity, with the same words
    text = "in 1990 [E1] Marie Curie [/E1] , a physicist , married [E2] Pierre [/E2] in a small town hall"
    aug = TextAugmenter(p_delete=0.5, p_swap=0.5, p_mask=0.5, mask_token="[MASK]")
    outs = aug([text] * 200, np.random.default_rng(0))
    for out in outs:
        (h0, h1), (t0, t1) = entity_spans(out, "augmented")
        assert (out[h0:h1], out[t0:t1]) == ("Marie Curie", "Pierre")
        assert out.index("[E1]") < out.index("[E2]")
    context = [w for w in text.split() if w not in "[E1] Marie Curie [/E1] [E2] Pierre [/E2]".split()]
    assert len({out for out in outs}) > 100  # the words around the entities still change
    assert any(len(out.split()) < len(text.split()) for out in outs)
    assert all(w in text.split() or w == "[MASK]" for out in outs for w in out.split())
    assert any(out.split().count("[MASK]") >= len(context) // 3 for out in outs)
    glued = "[E1]Paris[/E1] is the capital of [E2]France[/E2] ."  # markers written without spaces
    for out in aug([glued] * 50, np.random.default_rng(1)):
        (h0, h1), (t0, t1) = entity_spans(out, "augmented")
        assert (out[h0:h1], out[t0:t1]) == ("Paris", "France")


def test_image_jitter_keeps_shape_dtype_and_background():
    img = np.full((28, 28), 255, dtype=np.uint8)
    img[10:18, 12:16] = 0
    out = ImageAugmenter(degrees=15, translate=0.1)([img] * 4, np.random.default_rng(0))
    assert all(o.shape == (28, 28) and o.dtype == np.uint8 for o in out)
    borders = [np.concatenate([o[0], o[-1], o[:, 0], o[:, -1]]) for o in out]
    assert all(b.min() >= 150 for b in borders)  # filled with the background, no black frame
    assert any(not np.array_equal(o, img) for o in out)
    assert abs(int((out[0] < 128).sum()) - int((img < 128).sum())) < 20  # the stroke survives


def test_make_augmenter_uses_the_tokenizer_mask(tiny_text_encoder):
    assert make_augmenter("text", tiny_text_encoder).mask_token == tiny_text_encoder.tokenizer.mask_token
    assert isinstance(make_augmenter("image"), ImageAugmenter)
    with pytest.raises(ValueError, match="no augmentation for modality 'audio'"):
        make_augmenter("audio")


def test_rotation_classes():
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 255, size=(5, 5), dtype=np.uint8) for _ in range(6)]
    data = FewShotDataset("img", "image", items, ["a", "a", "b", "b", "c", "c"],
                          splits={"train": ["a", "b"], "val": ["c"]})
    rot = with_rotations(data)
    assert len(rot.items) == 24 and len(rot.labels) == 24
    assert rot.split_classes("train") == ["a", "b", "a@rot90", "b@rot90", "a@rot180", "b@rot180", "a@rot270",
                                          "b@rot270"]
    assert rot.split_classes("val") == ["c"]
    assert rot.labels[6 + 2] == "b@rot90"
    np.testing.assert_array_equal(rot.items[6 + 2], np.rot90(items[2]))
    np.testing.assert_array_equal(rot.items[18 + 1], np.rot90(items[1], 3))
    with pytest.raises(ValueError, match="rotation classes need an image dataset"):
        with_rotations(FewShotDataset("t", "text", ["x", "y"], ["a", "b"], splits={"train": ["a"]}))
