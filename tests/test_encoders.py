"""Encoders: registry, batching order, pooling, fingerprints, pretrained weights loaded safely."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.encoders import create_encoder, encoder_spec, list_encoders


def test_registry_lists_and_rejects_unknown():
    assert {"minilm", "mpnet", "conv4", "mobilenetv2"} <= set(list_encoders())
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


def test_mpnet_is_assembled_and_embeds_like_a_sentence_encoder():
    """all-mpnet-base-v2 from the five index packages (bin/setup assembles it): 768-d, cosine, entity pooling."""
    enc = create_encoder("mpnet")
    assert (enc.dim, enc.metric, sum(p.numel() for p in enc.parameters())) == (768, "cosine", 109_486_464)
    z = enc.encode(["How do I reset my password?", "I forgot my password, how can I change it?",
                    "What is the weather in Paris tomorrow?"])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    # measured: 0.856 for the paraphrases, 0.039 against the unrelated sentence
    assert 0.8 < z[0] @ z[1] < 0.9 and abs(z[0] @ z[2]) < 0.1
    ent = create_encoder("mpnet", pooling="entities")
    assert ent.encode(["[E1] Paris [/E1] is the capital of [E2] France [/E2] ."]).shape == (1, 3 * 768)


@pytest.mark.parametrize("name,floor", [("minilm", 0.985), ("mpnet", 0.95)])
def test_int8_precision_runs_and_agrees_closely_with_fp32(name, floor):
    """precision='int8' (dynamic int8 linear layers but the FFN down-projections): same embeddings, nearly."""
    texts = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "What is the weather in Paris tomorrow?"]
    fp32, int8 = create_encoder(name), create_encoder(name, precision="int8")
    a, b = fp32.encode(texts), int8.encode(texts)
    a, b = (z / np.linalg.norm(z, axis=1, keepdims=True) for z in (a, b))
    # measured cosine of int8 to fp32: minilm 0.989-0.991, mpnet 0.958-0.974 (0.53-0.68 quantizing every layer)
    assert ((a * b).sum(1) > floor).all()
    assert b[0] @ b[1] > 0.7 and abs(b[0] @ b[2]) < 0.1  # paraphrases still close, unrelated still far
    assert int8.fingerprint() != fp32.fingerprint() and int8.dim == fp32.dim
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'int8'\), got 'int4'"):
        create_encoder(name, precision="int4")


def test_entity_pooling_concatenates_normalised_text_head_and_tail_means(tiny_text_model_dir):
    enc = create_encoder(str(tiny_text_model_dir), pooling="entities")
    assert enc.dim == 3 * 32
    texts = ["the [E1] Cape Girardeau Bridge [/E1] spans the [E2] Mississippi [/E2] river",
             "[E2] Paris [/E2] is where [E1] Marie [/E1] lived"]
    batch = enc.preprocess(texts)
    tokens = enc.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert [t for t, m in zip(tokens, batch["head_mask"][0]) if m] == ["cape", "gi", "##rard", "##eau", "bridge"]
    assert [t for t, m in zip(tokens, batch["tail_mask"][0]) if m] == ["mississippi"]
    tokens1 = enc.tokenizer.convert_ids_to_tokens(batch["input_ids"][1])
    assert [t for t, m in zip(tokens1, batch["head_mask"][1]) if m] == ["marie"]
    assert [t for t, m in zip(tokens1, batch["tail_mask"][1]) if m] == ["paris"]
    with torch.no_grad():
        hidden = enc.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    z = enc.encode(texts, batch_size=1)
    for i in range(2):
        n = int(batch["attention_mask"][i].sum())
        parts = [hidden[i, :n].mean(0)] + [hidden[i][batch[k][i].bool()].mean(0) for k in ("head_mask", "tail_mask")]
        want = torch.cat([p / p.norm() for p in parts]).numpy()
        np.testing.assert_allclose(z[i], want, atol=1e-5)
    # the mean part is what mean pooling gives
    plain = create_encoder(str(tiny_text_model_dir), pooling="mean")
    plain.load_state_dict(enc.state_dict())
    m = plain.encode(texts[:1])[0]
    np.testing.assert_allclose(z[0, :32], m / np.linalg.norm(m), atol=1e-5)


def test_entity_pooling_refuses_unmarked_text_and_unknown_pooling(tiny_text_model_dir):
    enc = create_encoder(str(tiny_text_model_dir), pooling="entities")
    with pytest.raises(ValueError, match=r"item 1: expected the head entity marked once as '\[E1\] words \[/E1\]' and the tail as "
                                         r"'\[E2\] words \[/E2\]', "
                                         r"got 0 x '\[E2\]' and 0 x '\[/E2\]'"):
        enc.encode(["[E1] a [/E1] b [E2] c [/E2]", "[E1] a [/E1] b c"])
    with pytest.raises(ValueError, match="pooling must be one of"):
        create_encoder(str(tiny_text_model_dir), pooling="cls")


def test_a_datasets_encoder_options_apply_to_a_fresh_encoder_and_the_config_wins(tiny_text_model_dir, tmp_path):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.config import FewShotConfig
    from fewshot.data import FewShotDataset
    from fewshot.experiment import build_learner

    texts = ["[E1] a [/E1] is in [E2] b [/E2]", "[E1] c [/E1] works for [E2] d [/E2]"]
    ds = FewShotDataset("rel", "text", texts, ["in", "for"], encoder_options={"pooling": "entities"})
    cfg = FewShotConfig.from_dict({"encoder": str(tiny_text_model_dir)})
    learner = build_learner(cfg, ds)
    assert learner.encoder.pooling == "entities" and learner.encoder.dim == 96
    assert cfg.encoder_options == {"pooling": "entities"}  # resolved, for config.json and reports
    plain_cfg = FewShotConfig.from_dict({"encoder": str(tiny_text_model_dir), "encoder_options": {"pooling": "mean"}})
    assert build_learner(plain_cfg, ds).encoder.dim == 32
    # a checkpoint keeps the pooling it was trained with, whatever the dataset calls for
    save_checkpoint(tmp_path, build_learner(plain_cfg, ds))
    assert build_learner(FewShotConfig.from_dict({"checkpoint": str(tmp_path)}), ds).encoder.pooling == "mean"


def test_read_only_memory_mapped_images_convert_without_a_warning(tmp_path):
    """font_glyphs items are rows of a read-only memory map: conversion copies them (no non-writable warning)."""
    import warnings

    from fewshot.encoders.image import images_to_tensor

    np.save(tmp_path / "a.npy", np.full((2, 8, 8), 255, dtype=np.uint8))
    items = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert not items.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = images_to_tensor([items[0], items[1]], 8, 1)
    assert t.shape == (2, 1, 8, 8) and float(t.min()) == 1.0
