"""bin/bench-ner's module: the Few-NERD, WNUT-17 and SNIPS protocols and the sections they write."""
from __future__ import annotations

import json

import bench_ner
import bench_ner_options
import numpy as np
import pytest


@pytest.fixture
def md(tmp_path, monkeypatch):
    path = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(path))
    monkeypatch.setattr(bench_ner_options, "GRIDS", {"structshot": [{"temperature": 0.5}, {"temperature": 1.0}],
                                             "decomposed": [{"detector_steps": 0},
                                                            {"detector_steps": 20, "detector_lr": 0.01}]})
    return path


def rows_of(out: str) -> list[dict]:
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]


def test_ner_bench_rows_and_section(shared_data, md, monkeypatch, capsys):
    from benchmarks_md import read_section

    monkeypatch.setattr(bench_ner, "SETTINGS", ((5, 1),))
    assert bench_ner.main(["--episodes", "2", "--tune-episodes", "2", "--data-root", str(shared_data)]) == 0
    text = read_section("ner-fewnerd", md)
    rows = [ln for ln in text.splitlines() if ln.startswith("| 5-way 1~2-shot |")]
    assert [r.split("|")[2].strip() for r in rows] == ["protobert", "nnshot", "structshot", "decomposed"]
    assert all(r.split("|")[3].strip() == "2" for r in rows)
    assert "Command: `bin/bench-ner --episodes 2 --tune-episodes 2 --data-root" in text
    assert "not** the publisher's released" in text and "structshot 1-shot: temperature=" in text
    # a frozen encoder's zero detection head refuses 0 steps: the fitted option set is chosen, the refusal shown
    assert "decomposed 1-shot: detector_steps=20 detector_lr=0.01 (val F1 by option detector_steps=0: refused" in text
    out = rows_of(capsys.readouterr().out)
    assert out[2]["learner"] == "structshot" and out[2]["learner_options"]["temperature"] in (0.5, 1.0)
    assert out[3]["learner_options"] == {"detector_steps": 20, "detector_lr": 0.01}


def test_ner_bench_wnut17_protocol(shared_data, md, monkeypatch, capsys):
    from benchmarks_md import read_section

    from fewshot.datasets import load_dataset
    from fewshot.tagged import TaggedDataset

    def small(name, root=None):  # the first 30 test sentences keep the test cheap; each type appears
        ds = load_dataset(name, root)
        if name != "wnut17":
            return ds
        keep = [i for i, t in enumerate(ds.tags) if set(t) != {"O"}][:30]
        tags = [ds.tags[i] for i in keep]
        sub = TaggedDataset("wnut17", [ds.sentences[i] for i in keep], tags)
        return TaggedDataset("wnut17", sub.sentences, tags, splits={"test": sub.types})

    monkeypatch.setattr(bench_ner, "load_dataset", small)
    assert bench_ner.main(["--protocol", "wnut17", "--tune-episodes", "2", "--data-root", str(shared_data)]) == 0
    out = rows_of(capsys.readouterr().out)
    assert [(r["shot"], r["learner"]) for r in out] == [(s, x) for s in (1, 5) for x in bench_ner.LEARNERS]
    assert all(r["n_sets"] == 5 and len(r["f1_per_set"]) == 5 and r["test_sentences"] == 30 for r in out)
    # each distinct sentence embedded once: the test set and the 1-shot sets (25 sentences, some alike) first
    n = len(bench_ner.LEARNERS)
    assert 30 < out[0]["embedded_sentences"] <= 30 + 25 and [r["embedded_sentences"] for r in out[1:n]] == [0] * (n - 1)
    assert 0 < out[n]["embedded_sentences"] <= 112 and [r["embedded_sentences"] for r in out[n + 1:]] == [0] * (n - 1)
    text = read_section("ner-wnut17", md)
    assert "| 5 | structshot |" in text and "29.5 F1 at 5-shot" in text


def test_ner_bench_snips_protocol(shared_data, md, monkeypatch, capsys):
    from benchmarks_md import read_section

    monkeypatch.setattr(bench_ner, "SNIPS_INTENTS", ("SearchCreativeWork",))
    assert bench_ner.main(["--protocol", "snips", "--episodes", "2", "--tune-episodes", "2",
                           "--data-root", str(shared_data)]) == 0
    out = rows_of(capsys.readouterr().out)
    assert [(r["shot"], r["domain"]) for r in out if r["learner"] == "nnshot"] == [
        (1, "SearchCreativeWork"), (5, "SearchCreativeWork"), (1, "average"), (5, "average")]
    one = [r for r in out if r["domain"] == "SearchCreativeWork" and r["shot"] == 1]
    assert all(r["way"] == 2 and r["episodes"] == 2 for r in one)
    avg = next(r for r in out if r["domain"] == "average" and r["learner"] == "nnshot" and r["shot"] == 1)
    assert avg["f1"] == pytest.approx(next(r["f1"] for r in one if r["learner"] == "nnshot"))
    text = read_section("ner-snips", md)
    assert "| SearchCreativeWork |" in text and "**not** Hou et al.'s released episodes" in text


def test_ner_bench_finetune_protocol_is_paired_on_frozen_episodes(shared_data, md, monkeypatch, capsys):
    from benchmarks_md import read_section

    monkeypatch.setattr(bench_ner, "TUNED", {"adapt": "lora", "steps": 2, "encoder_lr": 1e-4})
    assert bench_ner.main(["--protocol", "finetune", "--episodes", "3", "--tuned-episodes", "2",
                           "--data-root", str(shared_data)]) == 0
    out = rows_of(capsys.readouterr().out)
    assert [(r["learner"], r["episodes"]) for r in out] == [
        ("protobert", 3), ("finetune-ner", 3), ("finetune-ner - protobert", 3),
        ("protobert", 2), ("finetune-ner", 2), ("finetune-ner - protobert", 2)]
    # one cache: the first learner embeds the 3 episodes' sentences, the frozen others nothing; LoRA embeds its own
    assert out[0]["embedded_sentences"] > 0 and out[1]["embedded_sentences"] == out[3]["embedded_sentences"] == 0
    assert out[4]["embedded_sentences"] > 0 and out[4]["learner_options"]["adapt"] == "lora"
    for diff, a, b in ((out[2], out[1], out[0]), (out[5], out[4], out[3])):
        assert diff["f1_difference"] == pytest.approx(a["f1"] - b["f1"])
        assert diff["f1_difference_ci95_low"] <= diff["f1_difference"] <= diff["f1_difference_ci95_high"]
    assert out[0]["way"] == 5 and out[0]["shot"] == 1 and out[0]["seed"] == 0
    text = read_section("ner-fewnerd-finetune", md)
    assert "Command: `bin/bench-ner --protocol finetune --episodes 3 --tuned-episodes 2" in text
    assert "| **finetune-ner - protobert** (paired) | defaults | 3 |" in text and "**same frozen episodes**" in text


def test_ner_bench_speed_protocol_counts_tokens_against_the_floor(shared_data, md, capsys):
    from benchmarks_md import read_section

    assert bench_ner.main(["--protocol", "speed", "--episodes", "3", "--sentences", "8", "--rounds", "2",
                           "--threads", "1,2", "--data-root", str(shared_data)]) == 0
    out = rows_of(capsys.readouterr().out)
    fast, tokens = out[:2], out[2]
    assert [(r["part"], r["threads"], r["sentences"]) for r in fast] == [("throughput", 1, 8), ("throughput", 2, 8)]
    assert all(r["sentences_per_s"] == pytest.approx(8 / r["seconds"]) and r["tokens"] > r["words"] for r in fast)
    assert tokens["part"] == "tokens" and tokens["episodes"] == 3
    # the run embeds each distinct sentence once: exactly the floor's sentences and tokens, in one pass per batch
    assert tokens["embedded_sentences"] == tokens["distinct_sentences"] <= tokens["episode_sentences"]
    assert tokens["embedded_tokens"] == tokens["floor_tokens"] <= tokens["reembedding_tokens"]
    assert tokens["padded_positions"] >= tokens["embedded_tokens"] and tokens["forward_passes"] >= 1
    text = read_section("ner-speed", md)
    assert "Command: `bin/bench-ner --protocol speed --episodes 3 --sentences 8" in text
    assert "| 1 | 8 |" in text and "| 2 | 8 |" in text and "embedded / floor" in text and "| 1.000 |" in text


def test_ner_bench_scores_a_checkpoint_beside_its_frozen_encoder(tmp_path, md, fewnerd_root, tiny_text_model_dir,
                                                                capsys):
    """--checkpoint: frozen and trained rows on the same episodes, the trained one as `fewshot run --checkpoint`
    scores it, with the paired gain; the frozen section is not touched."""
    from benchmarks_md import read_section
    from click.testing import CliRunner
    from fewshot.cli import main

    root, out = fewnerd_root, tmp_path / "ck"
    base = ["--dataset", "fewnerd-inter", "--data-root", str(root)]
    res = CliRunner().invoke(main, ["train", *base, "--encoder", str(tiny_text_model_dir), "--steps", "2",
                                    "--eval-every", "2", "--train-way", "3", "--val-way", "3", "--val-episodes", "2",
                                    "--lr", "1e-3", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    capsys.readouterr()
    assert bench_ner.main(["--checkpoint", str(out), "--setting", "5w1s", "--episodes", "3",
                           "--data-root", str(root)]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert [(r["model"], r["learner"], r["episodes"]) for r in rows] == [("frozen", "protobert", 3),
                                                                         ("trained", "protobert", 3)]
    run = CliRunner().invoke(main, ["run", *base, "--checkpoint", str(out), "--way", "5", "--shot", "1", "--episodes",
                                    "3", "--seed", "0", "--json", "--quiet"])
    assert run.exit_code == 0, run.output
    assert rows[1]["f1"] == pytest.approx(json.loads(run.output)["f1"])
    assert rows[1]["gain"] == pytest.approx(rows[1]["f1"] - rows[0]["f1"])
    assert rows[1]["gain_ci95_low"] <= rows[1]["gain"] <= rows[1]["gain_ci95_high"]
    # a checkpoint of another encoder than minilm has its own section: the encoder's name ends it
    assert read_section("ner-fewnerd-trained-protobert", md) == ""
    text = read_section(f"ner-fewnerd-trained-protobert-{tiny_text_model_dir.name}", md)
    assert "| 5-way 1~2-shot | protobert | trained | 3 |" in text
    assert "| 5-way 1~2-shot | protobert | frozen | 3 |" in text
    assert f"fewshot train --dataset fewnerd-inter --encoder {tiny_text_model_dir} --learner protobert" in text
    assert "--train-way 3 --train-shot 1 --val-way 3" in text and "2 steps run" in text
    assert read_section("ner-fewnerd", md) == ""
    with pytest.raises(SystemExit):
        bench_ner.main(["--checkpoint", str(tmp_path / "nothing"), "--data-root", str(root)])
    assert "not a readable fewshot train checkpoint" in capsys.readouterr().err


def test_ner_bench_scores_a_decomposed_checkpoint_with_its_trained_head(tmp_path, md, fewnerd_root,
                                                                       tiny_text_model_dir, capsys):
    """The trained decomposed row is the checkpoint's own learner (its detection head, not a zero one): it scores
    as `fewshot run --checkpoint` does with the options chosen on val."""
    from click.testing import CliRunner
    from fewshot.cli import main

    root, out = fewnerd_root, tmp_path / "ck"
    base = ["--dataset", "fewnerd-inter", "--data-root", str(root)]
    res = CliRunner().invoke(main, ["train", *base, "--encoder", str(tiny_text_model_dir), "--learner", "decomposed",
                                    "--steps", "4", "--eval-every", "4", "--train-way", "3", "--val-way", "3",
                                    "--val-episodes", "2", "--lr", "1e-3", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    capsys.readouterr()
    assert bench_ner.main(["--checkpoint", str(out), "--setting", "5w1s", "--episodes", "3", "--tune-episodes", "2",
                           "--data-root", str(root)]) == 0
    frozen, trained = rows_of(capsys.readouterr().out)
    assert (frozen["model"], trained["model"]) == ("frozen", "trained")
    assert frozen["learner_options"] == {"detector_steps": 20, "detector_lr": 0.01}  # a zero head refuses 0 steps
    flags = [x for k, v in trained["learner_options"].items() for x in ("-L", f"{k}={v}")]
    run = CliRunner().invoke(main, ["run", *base, "--checkpoint", str(out), "--way", "5", "--shot", "1", "--episodes",
                                    "3", "--seed", "0", *flags, "--json", "--quiet"])
    assert run.exit_code == 0, run.output
    assert trained["f1"] == pytest.approx(json.loads(run.output)["f1"])


def test_ner_bench_scores_snips_checkpoints_one_per_target_domain(tmp_path, md, shared_data, tiny_text_model_dir,
                                                                 monkeypatch, capsys):
    """--protocol snips --checkpoint 'DIR-{domain}': each domain's own checkpoint (trained with whole-domain
    episodes) against the frozen encoder on the same episodes, scored as `fewshot run --checkpoint` scores it;
    the average's gain is the mean of the domains' gains."""
    from benchmarks_md import read_section
    from click.testing import CliRunner
    from fewshot.cli import main

    intents = ("SearchCreativeWork", "SearchScreeningEvent")
    monkeypatch.setattr(bench_ner, "SNIPS_INTENTS", intents)
    template = str(tmp_path / "ck-{domain}")
    for intent in intents:
        res = CliRunner().invoke(main, [
            "train", "--dataset", f"snips-{intent.lower()}", "--data-root", str(shared_data), "--encoder",
            str(tiny_text_model_dir), "--learner", "protobert", "--tag-episodes", "domain", "--steps", "2",
            "--eval-every", "2", "--val-episodes", "2", "--lr", "1e-3", "--out", template.format(domain=intent.lower()),
            "--quiet"])
        assert res.exit_code == 0, res.output
        assert "--sampler minimum-including" in res.output  # how to score it as it validated
    capsys.readouterr()
    assert bench_ner.main(["--protocol", "snips", "--checkpoint", template, "--episodes", "2",
                           "--data-root", str(shared_data)]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert [(r["domain"], r["model"], r["shot"]) for r in rows] == [
        *[(i, m, s) for i in intents for m in ("frozen", "trained") for s in (1, 5)],
        *[("average", m, s) for s in (1, 5) for m in ("frozen", "trained")]]
    first = rows[2]  # SearchCreativeWork, trained, 1-shot
    run = CliRunner().invoke(main, ["run", "--dataset", "snips-searchcreativework", "--data-root", str(shared_data),
                                    "--checkpoint", template.format(domain="searchcreativework"), "--way", "2",
                                    "--shot", "1", "--sampler", "minimum-including", "--episodes", "2", "--seed", "0",
                                    "--json", "--quiet"])
    assert run.exit_code == 0, run.output
    assert first["f1"] == pytest.approx(json.loads(run.output)["f1"])
    assert first["gain"] == pytest.approx(first["f1"] - rows[0]["f1"])
    avg = next(r for r in rows if r["domain"] == "average" and r["model"] == "trained" and r["shot"] == 1)
    per_domain = [r["gain"] for r in rows if r["domain"] in intents and r["model"] == "trained" and r["shot"] == 1]
    assert avg["gain"] == pytest.approx(np.mean(per_domain))
    assert avg["gain_ci95_low"] <= avg["gain"] <= avg["gain_ci95_high"]
    text = read_section(f"ner-snips-trained-protobert-{tiny_text_model_dir.name}", md)
    assert "| **average** | protobert | trained |" in text and "--tag-episodes domain" in text
    assert "whole-domain 1+-shot" in text
    with pytest.raises(SystemExit):
        bench_ner.main(["--protocol", "snips", "--checkpoint", str(tmp_path / "ck"), "--data-root", str(shared_data)])
    assert "SNIPS needs one checkpoint per target domain" in capsys.readouterr().err


def test_ner_bench_scores_a_checkpoint_trained_with_type_names_with_them(tmp_path, md, fewnerd_root,
                                                                        tiny_text_model_dir, capsys):
    """A checkpoint trained with --class-names is scored with its types' names in every support set, frozen rows
    too, in a section of its own; its trained row is `fewshot run --checkpoint --class-names`."""
    from benchmarks_md import read_section
    from click.testing import CliRunner
    from fewshot.cli import main

    out = tmp_path / "ck"
    base = ["--dataset", "fewnerd-inter", "--data-root", str(fewnerd_root)]
    res = CliRunner().invoke(main, ["train", *base, "--encoder", str(tiny_text_model_dir), "--steps", "2",
                                    "--eval-every", "2", "--train-way", "3", "--val-way", "3", "--val-episodes", "2",
                                    "--lr", "1e-3", "--class-names", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    capsys.readouterr()
    assert bench_ner.main(["--checkpoint", str(out), "--setting", "5w1s", "--episodes", "3",
                           "--data-root", str(fewnerd_root)]) == 0
    rows = rows_of(capsys.readouterr().out)
    runs = {}
    for names in ("--class-names",):
        r = CliRunner().invoke(main, ["run", *base, "--checkpoint", str(out), "--way", "5", "--shot", "1",
                                      "--episodes", "3", "--seed", "0", "--json", "--quiet", names])
        assert r.exit_code == 0, r.output
        runs[names] = json.loads(r.output)["f1"]
    assert rows[1]["f1"] == pytest.approx(runs["--class-names"])
    text = read_section(f"ner-fewnerd-trained-protobert-{tiny_text_model_dir.name}-names", md)
    assert "--learner protobert --class-names --train-way 3" in text and "its name (`fewshot.tagged.type_name`)" in text
