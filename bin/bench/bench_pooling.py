"""Mean vs entity pooling of frozen MiniLM on FewRel's VALIDATION relations: BENCHMARKS.md "pooling".

The evidence behind the FewRel datasets' default ``pooling = "entities"``
(:attr:`fewshot.data.FewShotDataset.encoder_options`), measured on val classes only:
the 2 val relations of val_wiki.json and the 5 of the FewRel 2.0 files (``data.extra_val``),
5-way episodes, 15 queries per class, nearest prototype by cosine.

    bin/bench-pooling [--episodes 300] [--seed 0] [--no-write]
"""
from __future__ import annotations

from benchmarks_md import command, publish
from val_episodes import compared, parse_args, val_accuracy

EXTRA_VAL = ["fewrel-nyt", "fewrel-pubmed", "fewrel-semeval"]


def measure(pooling: str, shot: int, episodes: int, seed: int, data_root: str | None = None) -> dict:
    """Accuracy of the frozen encoder with ``pooling`` on 5-way ``shot``-shot episodes of the val relations."""
    row = val_accuracy("fewrel", shot, episodes, seed, data_root, EXTRA_VAL, {"pooling": pooling})
    return {"pooling": pooling, **row}


def main(argv=None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    rows = [measure(pooling, shot, args.episodes, args.seed, args.data_root)
            for shot in (1, 5) for pooling in ("mean", "entities")]
    lines = [f"Command: `{command('bench-pooling', argv)}`", "",
             f"Frozen all-MiniLM-L6-v2 + nearest prototype (cosine) on FewRel's {len(rows[0]['classes'])} "
             f"validation relations ({', '.join(rows[0]['classes'])}): val_wiki.json's 2 and the FewRel 2.0 "
             f"files' val relations (`data.extra_val`). 5-way episodes, 15 queries per class, episode seed "
             f"{args.seed}; mean +- 95% CI. Test relations are never used here.", "",
             "| shot | mean pooling | entity pooling | difference |", "|---|---|---|---|"]
    for mean, ent in zip(rows[::2], rows[1::2]):
        lines.append(f"| {mean['shot']} | {compared(mean, ent)} |")
    lines += ["", f"{rows[0]['episodes']} episodes per cell. Entity pooling: the L2-normalised means of the whole "
              "sentence, of the head entity's tokens and of the tail's, concatenated (`pooling = \"entities\"`)."]
    publish("pooling", "## Text pooling on FewRel's validation relations\n\n" + "\n".join(lines),
            write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
