"""Encoders: registry, batching order, pooling, fingerprints, pretrained weights loaded safely."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.encoders import create_encoder, encoder_spec, list_encoders


def test_registry_lists_and_rejects_unknown():
    assert {"minilm", "conv4", "mobilenetv2"} <= set(list_encoders())
    with pytest.raises(ValueError, match=r"unknown encoder 'conv5'.*Did you mean 'conv4'\?"):
        encoder_spec("conv5")


def test_text_encode_matches_unbatched_forward(tiny_text_encoder):
    texts = ["a short one", "a considerably longer sentence with many more tokens in it", "mid length text",
             "x"]
    z = tiny_text_encoder.encode(texts, batch_size=2)
    assert z.shape == (4, tiny_text_encoder.dim) and z.dtype == np.float32
    with torch.no_grad():
        for i, t in enumerate(texts):
            single = tiny_text_encoder(tiny_text_encoder.preprocess([t]))[0].numpy()
            np.testing.assert_allclose(z[i], single, atol=1e-5)


def test_mean_pooling_ignores_padding(tiny_text_encoder):
    batch = tiny_text_encoder.preprocess(["one", "one two three four five six"])
    with torch.no_grad():
        hidden = tiny_text_encoder.model(**batch).last_hidden_state
        pooled = tiny_text_encoder(batch)
    n0 = int(batch["attention_mask"][0].sum())
    np.testing.assert_allclose(pooled[0].numpy(), hidden[0, :n0].mean(0).numpy(), atol=1e-6)


def test_fingerprint_changes_with_weights(tiny_image_encoder):
    fp = tiny_image_encoder.fingerprint()
    assert fp == tiny_image_encoder.fingerprint() and len(fp) == 16
    with torch.no_grad():
        next(tiny_image_encoder.parameters()).add_(1.0)
    tiny_image_encoder._fingerprint = None
    assert tiny_image_encoder.fingerprint() != fp


def test_conv4_shapes_and_image_validation(tiny_image_encoder):
    imgs = [np.full((105, 105), 255, np.uint8), np.zeros((28, 28, 3), np.uint8)]
    z = tiny_image_encoder.encode(imgs)
    assert z.shape == (2, 8) and tiny_image_encoder.dim == 8
    with pytest.raises(TypeError, match=r"expected a uint8 array of shape \(H, W\) or \(H, W, C\), got str"):
        tiny_image_encoder.encode(["not an image"])


def test_text_encoder_rejects_non_text(tiny_text_encoder):
    with pytest.raises(TypeError, match="expects strings, item 1 is int"):
        tiny_text_encoder.encode(["ok", 3])


def test_mobilenetv2_loads_imagenet_weights_strictly():
    from torchvision.models import mobilenet_v2

    from fewshot.encoders.image import mobilenet_weights_path

    enc = create_encoder("mobilenetv2")
    state = torch.load(mobilenet_weights_path(), map_location="cpu", weights_only=True)
    ref = mobilenet_v2()
    ref.load_state_dict(state, strict=True)
    for (k, v), (k2, v2) in zip(enc.features.state_dict().items(), ref.features.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    img = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    z = enc.encode([img, img])
    assert z.shape == (2, 1280) and np.allclose(z[0], z[1]) and z.std() > 0


def test_minilm_matches_sentence_transformers_recipe(minilm):
    """Mean pooling of all-MiniLM-L6-v2: paraphrases are close, unrelated sentences are not."""
    z = minilm.encode(["How do I reset my password?", "I forgot my password, how can I change it?",
                       "What is the weather in Paris tomorrow?"])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert z.shape == (3, 384)
    assert z[0] @ z[1] > 0.7 and z[0] @ z[2] < 0.3
