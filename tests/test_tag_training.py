"""`fewshot train` on tagged data: tagging learners meta-trained on episodes of the train types, validated by
span F1 on the val types, checkpoints that score alike when loaded back, and refusals of bad pairings."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewshot.checkpoint import load_learner
from fewshot.cli import main
from fewshot.config import TrainConfig
from fewshot.datasets import load_dataset
from fewshot.encoders import create_encoder
from fewshot.learners import create_learner
from fewshot.tag_evaluation import evaluate_tagging
from fewshot.tagged import TaggedDataset
from fewshot.training import Trainer


def _trainer(model_dir, ds, learner="protobert", out=None, **kw):
    torch.manual_seed(0)
    learner = create_learner(learner, create_encoder(str(model_dir)))
    cfg = TrainConfig(**{"steps": 4, "eval_every": 2, "patience": 0, "lr": 1e-3, "train_way": 3, "train_shot": 1,
                         "val_way": 3, "val_shot": 1, "val_episodes": 6, **kw})
    return learner, Trainer(learner, ds, cfg, out_dir=out)


@pytest.mark.parametrize("name", ["protobert", "nnshot"])
def test_training_steps_lower_the_episode_loss(name, fewnerd_root, tiny_text_model_dir):
    ds = load_dataset("fewnerd-inter", fewnerd_root)
    learner, trainer = _trainer(tiny_text_model_dir, ds, name, steps=30)
    train_types = set(ds.splits["train"])
    eps = [trainer.sampler.sample(i) for i in range(30)]
    assert all(set(ep.types) <= train_types and len(ep.types) == 3 for ep in eps)
    assert all(set(ep.types) <= set(ds.splits["val"]) for ep in trainer.val_episodes)

    def loss() -> float:  # the mean episode loss of the first 8 training episodes, no dropout
        learner.module.eval()
        with torch.no_grad():
            return float(np.mean([trainer.wrapped("episode", *trainer.episode_inputs(ep))[0].item()
                                  for ep in eps[:8]]))

    before, weights = loss(), [p.detach().clone() for p in learner.module.parameters()]
    done = trainer.train_steps(30)
    assert len(done["losses"]) == 30 and all(np.isfinite(done["losses"]))
    after = loss()
    assert after < 0.7 * before, (before, after)
    assert any(not torch.equal(w, p) for w, p in zip(weights, learner.module.parameters()))


def test_episode_loss_is_the_cross_entropy_of_the_query_words(tiny_text_encoder):
    learner = create_learner("protobert", tiny_text_encoder)
    learner.module.eval()
    support, query = [("a", "Paris", "b"), ("Ada", "c")], [("Paris", "Ada", "x")]
    sy, qy = torch.tensor([0, 1, 0, 2, 0]), torch.tensor([1, 2, 0])
    loss, logits = learner.episode_loss(support, sy, query, qy)
    z = [torch.from_numpy(e) for e in learner.embed_words(support + query)]
    learner.adapt_features(torch.cat(z[:2]), sy)
    expected = learner.logits_features(z[2])
    torch.testing.assert_close(logits.detach(), expected, rtol=1e-4, atol=1e-4)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(expected, qy).item(), rel=1e-4)
    loss.backward()  # the word path is differentiable down to the encoder
    assert learner.encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"4 support and 3 query labels for 5 support"):
        learner.episode_loss(support, sy[:4], query, qy)


def test_validation_selects_by_span_f1_and_the_checkpoint_scores_alike(fewnerd_root, tiny_text_model_dir, tmp_path):
    ds = load_dataset("fewnerd-inter", fewnerd_root)
    out = tmp_path / "ck"
    _, trainer = _trainer(tiny_text_model_dir, ds, out=out, steps=6)
    metrics = trainer.fit()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4, 6] and {e["val_metric"] for e in log} == {"span_f1"}
    best = max(log, key=lambda e: (e["val_accuracy"], -e["step"]))
    assert metrics["best_step"] == best["step"] and metrics["best_val_accuracy"] == best["val_accuracy"]
    loaded = load_learner(out)
    assert loaded.name == "protobert"
    again = evaluate_tagging(loaded, ds, trainer.val_episodes, progress=False)
    assert again.f1 == pytest.approx(best["val_accuracy"])  # the saved step is the best one, scored by span F1
    low, high = again.f1_interval()
    assert best["val_ci95"] == pytest.approx((high - low) / 2)


def test_cli_train_then_run_and_bench_the_checkpoint(fewnerd_root, tiny_text_model_dir, tmp_path):
    out = tmp_path / "ck"
    base = ["--dataset", "fewnerd-inter", "--data-root", str(fewnerd_root)]
    res = CliRunner().invoke(main, ["train", *base, "--encoder", str(tiny_text_model_dir), "--steps", "2",
                                    "--eval-every", "2", "--train-way", "3", "--val-way", "3", "--val-episodes", "4",
                                    "--lr", "1e-3", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "protobert on fewnerd-inter: best validation span F1" in res.output and "3-way 1~2-shot" in res.output
    config = json.loads((out / "config.json").read_text())
    assert config["learner"]["name"] == "protobert" and config["learner"]["trainable"] == "full"
    run = ["run", *base, "--checkpoint", str(out), "--way", "3", "--shot", "1", "--episodes", "5", "--json", "--quiet"]
    first, second = (CliRunner().invoke(main, run) for _ in range(2))
    assert first.exit_code == 0, first.output
    a, b = json.loads(first.output), json.loads(second.output)
    assert a["task"] == "ner" and a["learner"] == "protobert" and a["episodes"] == 5
    assert (a["f1"], a["correct"], a["predicted"]) == (b["f1"], b["correct"], b["predicted"])
    ds = load_dataset("fewnerd-inter", fewnerd_root)
    from fewshot.tag_episodes import GreedyTypeSampler

    eps = list(GreedyTypeSampler(ds, 3, 1, seed=0, types=ds.splits["test"]).episodes(5))
    assert evaluate_tagging(load_learner(out), ds, eps, progress=False).f1 == pytest.approx(a["f1"])


def test_bad_pairings_are_refused(fewnerd_root, tiny_text_model_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "ck"
    base = ["train", "--encoder", str(tiny_text_model_dir), "--steps", "1", "--out", str(out), "--quiet"]
    res = runner.invoke(main, [*base, "--dataset", "fewnerd-inter", "--data-root", str(fewnerd_root),
                               "--learner", "protonet"])
    assert res.exit_code == 2 and "is tagged (NER" in res.output and "use --learner protobert" in res.output
    res = runner.invoke(main, [*base, "--dataset", "fewnerd-inter", "--data-root", str(fewnerd_root)])
    assert res.exit_code == 2 and "--val-way 5 needs 5 entity types" in res.output and "pass --val-way 3" in res.output
    res = runner.invoke(main, [*base, "--dataset", "fewnerd-inter", "--data-root", str(fewnerd_root),
                               "--val-way", "3", "--train-query", "4"])
    assert res.exit_code == 2 and "--train-query 4 do not apply to tagging episodes" in res.output
    csv = tmp_path / "texts.csv"
    csv.write_text("text,label\n" + "".join(f"text {i},c{i % 6}\n" for i in range(60)))
    res = runner.invoke(main, [*base, "--dataset", str(csv), "--learner", "protobert"])
    assert res.exit_code == 2 and "learner 'protobert' scores ner data" in res.output
    assert "is classified" in res.output
    assert not out.exists()


def test_include_val_trains_on_the_val_types_too_and_keeps_the_latest_step(fewnerd_root, tiny_text_model_dir,
                                                                              tmp_path):
    ds = load_dataset("fewnerd-inter", fewnerd_root)
    out = tmp_path / "final"
    _, trainer = _trainer(tiny_text_model_dir, ds, out=out, steps=4, include_val=True)
    assert trainer.sampler.types == sorted(ds.splits["train"] + ds.splits["val"]) and trainer.val_episodes == []
    drawn = {t for s in range(8) for t in trainer.sampler.sample(s).types}
    assert drawn & set(ds.splits["val"]) and not drawn & set(ds.splits["test"])  # val types train, test never
    metrics = trainer.fit()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4] and all(e["val_accuracy"] is None for e in log)
    assert metrics["best_step"] == 4  # nothing validates: the latest evaluation step is the checkpoint
    assert load_learner(out).name == "protobert"


def _domains_dataset():
    """Three domains of two types each (every sentence holds both of its domain's types): D1, D2 train, D3
    validates, D4 tests."""
    sentences, tags, domains = [], [], {}
    for d in ("D1", "D2", "D3", "D4"):
        a, b = f"{d}:a", f"{d}:b"
        domains.update({a: d, b: d})
        for i in range(8):
            sentences.append((f"{d.lower()}x{i}", "and", f"{d.lower()}y{i}", "."))
            tags.append((a, "O", b, "O"))
    splits = {"train": ["D1:a", "D1:b", "D2:a", "D2:b"], "val": ["D3:a", "D3:b"], "test": ["D4:a", "D4:b"]}
    return TaggedDataset("domains", sentences, tags, splits=splits, domains=domains)


def test_domain_episodes_train_on_whole_source_domains_and_validate_on_the_val_domain(tiny_text_model_dir):
    ds = _domains_dataset()
    torch.manual_seed(0)
    learner = create_learner("protobert", create_encoder(str(tiny_text_model_dir)))
    trainer = Trainer(learner, ds, TrainConfig(steps=4, eval_every=2, patience=0, lr=1e-3, val_episodes=3,
                                               tag_episodes="domain"))
    drawn = {trainer.sampler.sample(i).types for i in range(12)}
    assert drawn == {("D1:a", "D1:b"), ("D2:a", "D2:b")}  # a whole source domain each, never val or test
    assert [ep.types for ep in trainer.val_episodes] == [("D3:a", "D3:b")] * 3
    ep = trainer.sampler.sample(0)
    assert len(ep.support) == len(ep.query) == 1  # minimum-including: one sentence holds both types
    done = trainer.train_steps(4)
    assert len(done["losses"]) == 4 and all(np.isfinite(done["losses"]))


def test_domain_episodes_are_refused_where_they_do_not_apply(fewnerd_root, tiny_text_model_dir):
    learner = create_learner("protobert", create_encoder(str(tiny_text_model_dir)))
    with pytest.raises(ValueError, match=r"names no domains of its types; use --tag-episodes fewnerd"):
        Trainer(learner, load_dataset("fewnerd-inter", fewnerd_root),
                TrainConfig(tag_episodes="domain", val_episodes=2))
    with pytest.raises(ValueError, match=r"--train-way 3 do not apply to whole-domain tagging episodes"):
        Trainer(learner, _domains_dataset(), TrainConfig(tag_episodes="domain", train_way=3, val_episodes=2))
    with pytest.raises(ValueError, match=r"must be one of \('fewnerd', 'domain'\), got 'snips'"):
        TrainConfig(tag_episodes="snips")


def test_class_names_add_each_type_name_to_training_and_validation_support_sets(tiny_text_model_dir):
    ds = _domains_dataset()
    learner = create_learner("protobert", create_encoder(str(tiny_text_model_dir)))
    trainer = Trainer(learner, ds, TrainConfig(steps=2, eval_every=2, patience=0, lr=1e-3, val_episodes=2,
                                               tag_episodes="domain", class_names=True))
    ep = trainer.sampler.sample(0)
    support, sy, query, qy = trainer.episode_inputs(ep)
    n = len(ep.support)
    assert support[n:] == [("a",), ("b",)]  # D1:a -> "a": one name sentence per type, after the sampled ones
    assert sy[-2:].tolist() == [1, 2] and len(sy) == sum(len(s) for s in support)
    assert len(query) == len(ep.query) and len(qy) == sum(len(s) for s in query)
    plain = Trainer(learner, ds, TrainConfig(steps=2, val_episodes=2, tag_episodes="domain"))
    assert plain.episode_inputs(ep)[0] == support[:n]
    assert np.isfinite(trainer.fit()["best_val_accuracy"])
