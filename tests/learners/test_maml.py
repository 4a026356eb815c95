"""MAMLLearner: meta-gradients against torch.func, evaluation without side effects, Omniglot training."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fewshot.data import FewShotDataset
from fewshot.episodes import EpisodeSampler
from fewshot.evaluation import evaluate
from fewshot.learners import create_learner, learner_config
from fewshot.learners.maml import MAMLConfig, MAMLLearner
from fewshot.training import meta_train


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(28, 28), dtype=np.uint8) for _ in range(n)]


def _reference(learner: MAMLLearner, xs_items, ys, xq_items, yq, first_order: bool, anil: bool):
    """The same task written with torch.func: replicated head init, inner SGD, query loss, meta-gradient."""
    net, enc, cfg = learner.module, learner.encoder, learner.cfg
    params = dict(net.named_parameters())
    xs, xq = enc.preprocess(xs_items), enc.preprocess(xq_items)
    n_way = int(ys.max()) + 1
    # clones, as learn2learn's: the inner loop differentiates with respect to its own copies of the weights, not
    # through a Proto-MAML head init that was computed from the originals
    fast = {} if anil else {k[len("encoder."):]: v.clone() for k, v in params.items() if k.startswith("encoder.")}
    fast["weight"], fast["bias"] = params["head_weight"].expand(n_way, -1), params["head_bias"].expand(n_way)
    zs, zq = (enc(xs), enc(xq)) if anil else (None, None)
    if cfg.head_init == "prototypes":  # Proto-MAML, written out: class means of the support's embeddings
        z = zs if anil else enc(xs)
        c = torch.stack([z[ys == k].mean(0) for k in range(n_way)])
        fast["weight"], fast["bias"] = fast["weight"] + 2 * c, fast["bias"] - (c * c).sum(1)

    def forward(p, x, z):
        if z is None:
            z = functional_call(enc, {k: v for k, v in p.items() if k not in ("weight", "bias")}, (x,))
        return F.linear(z, p["weight"], p["bias"])

    for _ in range(cfg.inner_steps):
        grads = torch.autograd.grad(F.cross_entropy(forward(fast, xs, zs), ys), list(fast.values()),
                                    create_graph=not first_order)
        fast = {k: v - cfg.inner_lr * (g.detach() if first_order else g) for (k, v), g in zip(fast.items(), grads)}
    loss = F.cross_entropy(forward(fast, xq, zq), yq)
    return loss, torch.autograd.grad(loss, list(params.values()))


@pytest.mark.parametrize("head_init", ["zero", "prototypes"])
@pytest.mark.parametrize("anil", [False, True])
@pytest.mark.parametrize("first_order", [False, True])
def test_episode_loss_meta_gradient_matches_torch_func(tiny_image_encoder, first_order, anil, head_init):
    learner = create_learner("maml", tiny_image_encoder, {"inner_steps": 2, "inner_lr": 0.3, "first_order": first_order,
                                                          "anil": anil, "head_init": head_init})
    # a non-zero head init, so that every path of the meta-gradient is exercised
    with torch.no_grad():
        learner.module.head_weight.copy_(torch.linspace(-0.5, 0.5, learner.encoder.dim))
        learner.module.head_bias.fill_(0.1)
    learner.module.train()
    xs, xq = _images(6, 0), _images(9, 1)
    ys, yq = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([2, 1, 0] * 3)

    loss, logits = learner.episode_loss(xs, ys, xq, yq)
    assert logits.shape == (9, 3) and loss.ndim == 0
    params = list(learner.module.parameters())
    got = torch.autograd.grad(loss, params)
    ref_loss, ref = _reference(learner, xs, ys, xq, yq, first_order, anil)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(learner.module.named_parameters(), got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    # the meta-gradient reaches the encoder and the head init
    by_name = dict(zip([n for n, _ in learner.module.named_parameters()], got))
    assert by_name["head_weight"].abs().sum() > 0
    assert by_name["encoder.blocks.0.0.weight"].abs().sum() > 0


def test_proto_maml_starts_as_the_euclidean_prototype_classifier(tiny_image_encoder):
    """head_init = prototypes: with a vanishing inner step, ANIL predicts what protonet (squared
    Euclidean) predicts on the same embeddings; the zero head cannot (all its rows are equal)."""
    tiny_image_encoder.eval()
    support, query, ys = _images(8, 6), _images(12, 7), np.array([0, 1, 2, 3] * 2)
    proto = create_learner("protonet", tiny_image_encoder, {"metric": "euclidean"})
    proto.adapt(support, ys)
    expected = proto.logits(query) / proto.temperature  # -||z - c||^2
    for anil in (True, False):
        learner = create_learner("maml", tiny_image_encoder, {"inner_steps": 1, "inner_lr": 1e-12, "anil": anil,
                                                              "head_init": "prototypes"})
        learner.adapt(support, ys)
        got = learner.logits(query)
        assert got.std(1).min() > 0  # every query's classes score apart from the first step on
        if anil:  # full MAML embeds on the support's batch statistics (see the module): other features
            # 2 c.z - ||c||^2 = -||z - c||^2 + ||z||^2: the same up to a per-query constant
            torch.testing.assert_close(got - got.mean(1, keepdim=True), expected - expected.mean(1, keepdim=True),
                                       rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
            assert torch.equal(got.argmax(1), expected.argmax(1))
        zero = create_learner("maml", tiny_image_encoder, {"inner_steps": 1, "inner_lr": 1e-12, "anil": anil})
        zero.adapt(support, ys)
        assert zero.logits(query).std(1).max() < 1e-6  # the zero head's rows are all equal
    with pytest.raises(ValueError, match="head_init must be one of"):
        MAMLConfig(head_init="random")


def test_second_order_differs_from_first_order(tiny_image_encoder):
    xs, xq = _images(4, 2), _images(4, 3)
    ys, yq = torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 1, 0])
    grads = {}
    for fo in (True, False):
        learner = create_learner("maml", tiny_image_encoder, {"inner_steps": 2, "first_order": fo, "anil": False})
        learner.module.train()
        loss, _ = learner.episode_loss(xs, ys, xq, yq)
        grads[fo] = torch.autograd.grad(loss, [learner.module.encoder.blocks[0][0].weight])[0]
    assert (grads[True] - grads[False]).abs().max() > 1e-6


def test_config_validation_and_defaults(tiny_image_encoder, tiny_text_encoder):
    with pytest.raises(ValueError, match=r"inner_steps must be an int >= 1, got 0"):
        MAMLConfig(inner_steps=0)
    with pytest.raises(ValueError, match=r"inner_lr must be a positive number, got -0.1"):
        MAMLConfig(inner_lr=-0.1)
    with pytest.raises(ValueError, match=r"test_inner_steps must be an int >= 1 or unset"):
        MAMLConfig(test_inner_steps=0)
    with pytest.raises(ValueError, match="Did you mean 'inner_steps'"):
        learner_config({"name": "maml", "inner_step": 3})
    cfg = learner_config({"name": "maml", "inner_lr": "1e-1", "first_order": "true"})
    assert (cfg.inner_lr, cfg.first_order, cfg.to_dict()["name"]) == (0.1, True, "maml")
    image, text = create_learner("maml", tiny_image_encoder), create_learner("maml", tiny_text_encoder)
    assert (image.anil, image.adapts_encoder) == (False, True)  # MAML on images
    assert (text.anil, text.adapts_encoder) == (True, False)  # ANIL on text by default
    assert sorted(image.module.state_dict())[-2:] == ["head_bias", "head_weight"]
    assert image.module.encoder is tiny_image_encoder


def test_bad_labels_are_refused(tiny_image_encoder):
    learner = create_learner("maml", tiny_image_encoder, {"inner_steps": 1})
    x = _images(4)
    with pytest.raises(ValueError, match=r"local labels \[1\] have no support example"):
        learner.episode_loss(x[:2], torch.tensor([0, 2]), x[2:], torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"query_y must lie in 0\.\.1"):
        learner.episode_loss(x[:2], torch.tensor([0, 1]), x[2:], torch.tensor([0, 5]))
    with pytest.raises(TypeError, match="integer torch tensor"):
        learner.episode_loss(x[:2], np.array([0, 1]), x[2:], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"call adapt\(\)"):
        learner.logits(x)


def test_evaluation_leaves_module_untouched_and_is_not_transductive(tiny_image_encoder):
    learner = create_learner("maml", tiny_image_encoder, {"inner_steps": 1, "test_inner_steps": 3})
    learner.module.train()
    before = {k: v.clone() for k, v in learner.module.state_dict().items()}
    support, query = _images(6, 4), _images(5, 5)
    learner.adapt(support, np.array([0, 1, 2, 0, 1, 2]))
    together = learner.logits(query)
    one_by_one = torch.cat([learner.logits([q]) for q in query])
    assert together.shape == (5, 3) and together.dtype == torch.float32
    torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=1e-5)
    assert together.std() > 0  # the adapted head is no longer the zero head
    for k, v in learner.module.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert learner.module.training and learner.encoder.training  # modes restored


def test_anil_on_text_trains_encoder_through_the_outer_loop(tiny_text_encoder):
    learner = create_learner("maml", tiny_text_encoder, {"inner_steps": 2, "inner_lr": 0.5})
    learner.module.train()
    xs = ["the cat sat", "stocks fell sharply", "a dog barked", "markets rallied today"]
    ys, yq = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1])
    loss, logits = learner.episode_loss(xs, ys, ["a cat meowed", "bonds rose"], yq)
    loss.backward()
    assert logits.shape == (2, 2)
    word_grad = learner.encoder.model.embeddings.word_embeddings.weight.grad
    assert word_grad is not None and word_grad.abs().sum() > 0
    # evaluation embeds once: adapt_features / logits_features through the evaluator
    labels = ["animal", "money"] * 4
    items = xs + ["the bird sang", "prices dropped", "a horse ran", "gold climbed"]
    ds = FewShotDataset("tiny", "text", items, labels)
    episodes = list(EpisodeSampler(ds.labels, 2, 1, 2, seed=0).episodes(3))
    result = evaluate(learner, ds, episodes, progress=False)
    assert result.n_embedded == len(items) and result.accuracies.shape == (3,)


def test_full_maml_through_a_transformer(tiny_text_encoder):
    learner = create_learner("maml", tiny_text_encoder, {"inner_steps": 1, "anil": False})
    learner.module.train()
    loss, _ = learner.episode_loss(["a b", "c d"], torch.tensor([0, 1]), ["a", "c"], torch.tensor([0, 1]))
    loss.backward()
    assert learner.encoder.model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def _omniglot_small1(shared_data, size: int = 28) -> FewShotDataset:
    """images_background_small1 read straight from its zip; Early_Aramaic is val, as in the project split."""
    from PIL import Image

    items, labels = [], []
    with zipfile.ZipFile(shared_data / "omniglot" / "images_background_small1.zip") as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".png")):
            parts = name.split("/")
            img = Image.open(io.BytesIO(zf.read(name))).convert("L").resize((size, size), Image.BILINEAR)
            items.append(np.array(img, dtype=np.uint8))
            labels.append(f"{parts[1]}/{parts[2]}")
    val = sorted({c for c in labels if c.startswith("Early_Aramaic/")})
    train = sorted(set(labels) - set(val))
    return FewShotDataset("omniglot-small1-28", "image", items, labels, splits={"train": train, "val": val})


@pytest.fixture
def one_thread():
    """One torch thread for the longer CPU test: on a loaded shared machine two threads ran several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_meta_training_on_omniglot_beats_the_untrained_model(shared_data, one_thread):
    """150 first-order MAML steps on small1's training alphabets lift 5-way 1-shot accuracy on held-out
    Early_Aramaic from near chance (measured 0.29) to about 0.6 (measured 0.63 after 200 steps)."""
    from fewshot.encoders import create_encoder

    ds = _omniglot_small1(shared_data)
    torch.manual_seed(0)
    encoder = create_encoder("conv4", invert=True, hidden=32)
    learner = create_learner("maml", encoder, {"inner_steps": 1, "inner_lr": 0.4, "first_order": True})
    val = list(EpisodeSampler(ds.labels, 5, 1, 5, seed=1, classes=ds.split_classes("val")).episodes(100))
    before = evaluate(learner, ds, val, progress=False).mean

    train = EpisodeSampler(ds.labels, 5, 1, 5, seed=2, classes=ds.split_classes("train"))
    opt = torch.optim.Adam(learner.module.parameters(), lr=1e-3)
    learner.module.train()
    for ep in train.episodes(150):
        loss, _ = learner.episode_loss(ds.take(ep.support), torch.from_numpy(ep.support_labels),
                                       ds.take(ep.query), torch.from_numpy(ep.query_labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate(learner, ds, val, progress=False).mean
    assert before < 0.4
    assert after > 0.5 and after > before + 0.2, (before, after)


def test_trainer_checkpoint_round_trip(tiny_image_encoder, tmp_path):
    """fewshot.training.Trainer drives maml (validation runs under torch.no_grad); the saved
    checkpoint reloads into a learner that predicts exactly like the trained one."""
    from fewshot.checkpoint import load_learner, save_checkpoint
    from fewshot.config import TrainConfig

    rng = np.random.default_rng(0)
    protos = [rng.integers(0, 256, size=(28, 28), dtype=np.uint8) for _ in range(8)]
    items = [np.clip(p.astype(int) + rng.integers(-30, 30, size=p.shape), 0, 255).astype(np.uint8)
             for p in protos for _ in range(6)]
    labels = [f"c{k}" for k in range(8) for _ in range(6)]
    ds = FewShotDataset("tiny-images", "image", items, labels,
                        splits={"train": [f"c{k}" for k in range(5)], "val": [f"c{k}" for k in range(5, 8)]})
    learner = create_learner("maml", tiny_image_encoder, {"inner_steps": 1, "test_inner_steps": 2})
    cfg = TrainConfig(steps=4, eval_every=2, patience=0, lr=1e-3, head_lr=1e-3, train_way=3, train_query=2,
                      val_way=3, val_query=2, val_episodes=3)
    metrics = meta_train(learner, ds, cfg, out_dir=tmp_path / "run")
    assert metrics["steps"] == 4 and 0.0 <= metrics["best_val_accuracy"] <= 1.0
    from fewshot.checkpoint import is_checkpoint

    assert is_checkpoint(tmp_path / "run")

    save_checkpoint(tmp_path / "final", learner, {"learner": learner.cfg.to_dict()})
    loaded = load_learner(tmp_path / "final")
    assert isinstance(loaded, MAMLLearner) and loaded.cfg == learner.cfg
    learner.module.eval()
    ep = EpisodeSampler(ds.labels, 3, 1, 2, seed=5, classes=ds.split_classes("val")).sample(0)
    for lrn in (learner, loaded):
        lrn.adapt(ds.take(ep.support), ep.support_labels)
    torch.testing.assert_close(loaded.logits(ds.take(ep.query)), learner.logits(ds.take(ep.query)))
    torch.testing.assert_close(loaded.module.head_weight, learner.module.head_weight)


def test_inner_loop_over_lora_parameters_only(tiny_text_encoder):
    learner = create_learner("maml", tiny_text_encoder,
                             {"anil": False, "trainable": "lora", "inner_steps": 2, "first_order": True})
    trained = {n for n, p in learner.module.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("head_") for n in trained)
    learner.module.train()
    xs, ys = ["the cat sat", "stocks fell", "a dog ran", "bonds rose"], torch.tensor([0, 1, 0, 1])
    loss, _ = learner.episode_loss(xs, ys, ["a cat", "gold fell"], torch.tensor([0, 1]))
    loss.backward()
    lora_b = [p for n, p in learner.module.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None for p in lora_b) and sum(p.grad.abs().sum() for p in lora_b) > 0
    assert learner.encoder.model.embeddings.word_embeddings.weight.grad is None
    # evaluation: only the LoRA matrices and the head move in the inner loop (the encoder from the second
    # step on: a head whose rows are all equal passes no gradient to the features)
    learner.module.eval()
    learner.adapt(xs, ys)
    original = {f"encoder.{k}": v for k, v in learner.encoder.named_parameters()}
    moved = {k for k, v in learner._adapted["params"].items() if k in original and not torch.equal(v, original[k])}
    assert moved and all("lora_B" in k for k in moved)
