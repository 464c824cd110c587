"""The command line: python -m dlviz COMMAND PRESET [options] (see DESIGN.md's CLI contract)."""

from __future__ import annotations

import argparse
import json
import sys

from dlviz.errors import UserError
from dlviz.text import clean

EXIT_USER = 2
EXIT_DIVERGED = 3
EXIT_CHECK_FAILED = 1


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _fmt_rf(rf) -> str:
    if not rf:
        return ""
    return "/".join(str(rf[k]).replace(" ", "") for k in ("size", "stride", "padding"))


def summary_text(summary) -> str:
    """The summary as an aligned text table, totals last."""
    head = ("layer", "type", "output", "params", "FLOPs", "RF size/stride/pad")
    rows = []
    for r in summary.rows:
        label = "  " * r.depth + r.path.rsplit(".", 1)[-1] + (f" ({clean(r.name)})" if r.name else "")
        params = r.trainable_params + r.non_trainable_params
        rows.append((label, r.type, _fmt_shape(r.output_shape), f"{params:,}", f"{r.flops:,}", _fmt_rf(r.receptive_field)))
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    out += [line(r) for r in rows]
    out.append("-" * len(out[1]))
    out.append(f"input {_fmt_shape(summary.input_shape)} -> output {_fmt_shape(summary.output_shape)}")
    out.append(
        f"total params {summary.total_params:,} (trainable {summary.trainable_params:,}, "
        f"non-trainable {summary.total_params - summary.trainable_params:,}); buffers {summary.buffers:,}"
    )
    out.append(f"FLOPs per sample {summary.flops:,} (multiply-adds count 2)")
    if summary.receptive_field:
        out.append(f"receptive field {_fmt_rf(summary.receptive_field)} (size/stride/padding, at the last spatial map)")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlviz", description="Build, summarise and train neural networks from dlviz presets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_ref = "a preset file, a built-in preset's name, a share link, or - for stdin"
    sub.add_parser("validate", help="check a preset").add_argument("preset", help=p_ref)
    p = sub.add_parser("summary", help="per-layer shapes, parameters, FLOPs and receptive fields")
    p.add_argument("preset", help=p_ref)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("schema", help="print the preset format as JSON Schema")
    p = sub.add_parser("list", help="the built-in presets")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("train", help="train headless; exit 3 if the run diverges")
    p.add_argument("preset", help=p_ref)
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument("--json", action="store_true", help="one JSON object per epoch, then a final one")
    p.add_argument("--save", action="store_true", help="keep the run in the run store, as the app does (a later preset's init_from can start from it)")
    p = sub.add_parser("export", help="write a standalone training script, the model as ONNX, or its weights")
    p.add_argument("preset", help=p_ref)
    p.add_argument(
        "--format",
        required=True,
        choices=("py", "onnx", "safetensors", "pt"),
        help="py: a script that trains the preset with plain PyTorch; onnx: the model; safetensors or pt: its weights",
    )
    p.add_argument("-o", "--output", required=True, help="the file to write (- prints a script to stdout)")
    p.add_argument("--run", default=None, help="a stored run's id: export its final weights instead of the untrained model's")
    p = sub.add_parser("share", help="print a share link for a preset")
    p.add_argument("preset", help=p_ref)
    p.add_argument("--base-url", default=None, help="the app's address (default http://localhost:8501/)")
    p = sub.add_parser("lr-find", help="the learning-rate range test: the loss as the rate grows, and a suggested rate")
    p.add_argument("preset", help=p_ref)
    p.add_argument("--steps", type=int, default=100, help="steps of the test (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("check", help="the sanity checks before a long run; exit 1 when one fails")
    p.add_argument("preset", help=p_ref)
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p = sub.add_parser("sweep", help="hyperparameter search with Optuna; processes may share a study through PostgreSQL")
    p.add_argument("preset", nargs="?", default=None, help=p_ref + ' (default: the space\'s "preset")')
    p.add_argument("--space", required=True, help="the space: a JSON file of the values to search (see dlviz/training/search.py)")
    p.add_argument("--trials", type=int, required=True, help="trials this process runs")
    p.add_argument("--storage", default=None, help="the study's database URL (default: optuna.sqlite in the data directory)")
    p.add_argument("--study", default=None, help="the study's name (default: one that follows the preset and the space)")
    p.add_argument("--sampler", choices=("random", "tpe"), default="random")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--zoom", default=None, metavar="FILE", help="coarse to fine: write the space narrowed around the best trials to FILE, for the next stage")
    p.add_argument("--json", action="store_true", help="one JSON object per trial, then the best")
    args = parser.parse_args(argv)

    from dlviz.data.uploads import local_paths

    try:
        with local_paths():  # a preset on the command line is the user's own: its data.source may be any local CSV
            return _run(args)
    except UserError as e:
        print(f"error: {clean(e)}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        return 130


def _run(args) -> int:
    from dlviz.preset import gallery

    if args.command == "schema":
        from dlviz.preset.json_schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "list":
        items = gallery.listing()
        if args.json:
            print(json.dumps(items, indent=2))
        else:
            width = max(len(i["name"]) for i in items)
            for i in items:
                print(clean(f"{i['name'].ljust(width)}  {i['title']}: {i['description']}"))
        return 0
    if args.command == "sweep":
        return _sweep(args)
    exp = gallery.resolve(args.preset, sys.stdin)
    if args.command == "validate":
        from dlviz.model.build import summarize

        summarize(exp, count_flops=False)  # a preset is valid only if its shapes work out
        if exp.data is not None and exp.loss is not None and exp.optimizer is not None:
            from dlviz.training.fit import check_trainable

            check_trainable(exp)  # and only if the loss fits the model's output and the data's targets
        print(f"ok: {clean(exp.name)}")
        return 0
    if args.command == "summary":
        from dlviz.model.build import summarize

        s = summarize(exp)
        print(json.dumps(s.to_json()) if args.json else summary_text(s))
        return 0
    if args.command == "train":
        return _train(exp, args)
    if args.command == "lr-find":
        return _lr_find(exp, args)
    if args.command == "check":
        return _check(exp, args)
    if args.command == "export":
        return _export(exp, args)
    if args.command == "share":
        from dlviz.preset.share import DEFAULT_BASE_URL, SAFE_LINK_CHARS, share_link

        link = share_link(exp, args.base_url or DEFAULT_BASE_URL)
        print(link)
        if len(link) > SAFE_LINK_CHARS:
            print(
                f"warning: the link is {len(link):,} characters, over the {SAFE_LINK_CHARS:,} that every browser and chat tool "
                "keeps intact; share the preset file instead",
                file=sys.stderr,
            )
        return 0
    raise AssertionError(args.command)


def _export(exp, args) -> int:
    from dlviz import export

    out = args.output
    if args.format == "py":
        if args.run:
            raise UserError("export.run", "--run applies to the onnx, safetensors and pt formats; a script trains its own weights")
        if exp.init_from is not None and out == "-":
            raise UserError(
                "export.output", "this preset starts from a run's weights (init_from), which its script reads from a file beside it; give a file name with -o"
            )
        text = export.script(exp, out)
        if out == "-":
            sys.stdout.write(text)
            return 0
        _write(out, text.encode("utf-8"))
        if exp.init_from is not None:
            import os

            weights = os.path.join(os.path.dirname(os.path.abspath(out)), export.init_file(out))
            _write(weights, export.state_dict_bytes(export.init_weights(exp)))
            print(f"wrote {weights}: the starting weights (init_from) the script reads")
        print(f"wrote {out}: run it with `python {out}` to train the preset and print the same lines as `train --json`")
        return 0
    if out == "-":
        raise UserError("export.output", f"the {args.format} format is binary; give a file name with -o")
    weights = export.run_weights(args.run) if args.run else None
    if args.format == "onnx":
        _check_writable(out)
        info = export.onnx(exp, out, state_dict=weights)
        batch = "any batch size" if info["dynamic_batch"] else "batches of 2"
        print(f"wrote {out}: checked in onnxruntime for {batch}, largest difference from PyTorch {info['max_abs_diff']:.2g}")
        return 0
    from dlviz.model.build import build_model

    net = build_model(exp, seed=exp.seed)
    if weights is not None:
        try:
            net.load_state_dict(weights)
        except RuntimeError:
            raise UserError("export.run", f"the weights of run {args.run} do not fit this preset's model; export with the run's own preset") from None
    state = net.state_dict()
    data = export.safetensors_bytes(state) if args.format == "safetensors" else export.state_dict_bytes(state)
    _write(out, data)
    what = f"run {args.run}'s final weights" if args.run else "the untrained weights (seed " + str(exp.seed) + ")"
    print(f"wrote {out}: {what}, {len(state)} tensors")
    return 0


def _check_writable(path: str) -> None:
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError("export.output", f"cannot write {path}: the folder {folder} does not exist")


def _write(path: str, data: bytes) -> None:
    _check_writable(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise UserError("export.output", f"cannot write {path}: {e.strerror}") from None


def _train(exp, args) -> int:
    import torch

    from dlviz import limits
    from dlviz.training.trainer import Callback, Trainer, json_safe

    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError("training.epochs", f"--epochs must be at least 1, got {args.epochs}")
        from dlviz.preset.schema import validate

        doc = exp.to_dict(full=True)
        doc["training"]["epochs"] = args.epochs
        exp = validate(doc)
    torch.set_num_threads(limits.current().train_threads)

    class Printer(Callback):
        def on_epoch_end(self, trainer, record):
            rec = {k: v for k, v in record.items() if k not in ("step",)}
            if args.json:
                print(json.dumps(json_safe(rec)), flush=True)
            else:
                print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()), flush=True)

    trainer = Trainer(exp, [Printer()])
    if args.save:
        from dlviz.training.store import RunStore, StoreCallback

        store = RunStore()
        run_id = store.create_run(exp, status="running")
        trainer.callbacks.append(StoreCallback(store, run_id))
        print(f"run {run_id} is kept in the run store", file=sys.stderr)
    if trainer.transfer is not None:
        print(clean(trainer.transfer.message()), file=sys.stderr)
    result = trainer.run()
    print(json.dumps(json_safe(result)) if args.json else clean(f"{result['status']}: " + ", ".join(f"{k} {v}" for k, v in result.items() if k != "status")))
    if result["status"] == "diverged":
        print(f"error: the run diverged: {clean(result.get('reason', ''))}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def _check(exp, args) -> int:
    from dlviz.analysis.sanity import sanity_checks

    def show(check):
        if args.json:
            print(json.dumps(check.to_json()), flush=True)
        else:
            mark = {True: "ok", False: "FAIL", None: "n/a"}[check.ok]
            print(clean(f"{mark:4}  {check.name}: {check.sentence}"), flush=True)

    checks = sanity_checks(exp, on_check=show)
    return EXIT_CHECK_FAILED if any(c.ok is False for c in checks) else 0


def _lr_find(exp, args) -> int:
    import torch

    from dlviz import limits
    from dlviz.analysis.lrfind import lr_range_test
    from dlviz.training.trainer import json_safe

    torch.set_num_threads(limits.current().train_threads)
    r = lr_range_test(exp, steps=args.steps)
    if args.json:
        print(json.dumps(json_safe(r.to_json())))
        return 0
    print(f"{'lr':>10}  {'loss':>10}  {'smoothed':>10}")
    for lr, loss, s in zip(r.lrs, r.losses, r.smoothed):
        print(f"{lr:10.3g}  {loss:10.4f}  {s:10.4f}")
    if r.stopped_early:
        print(f"stopped early: {r.reason}")
    print(f"suggested lr {r.suggested:.3g}: {r.rule}")
    return 0


def _sweep(args) -> int:
    import torch

    from dlviz import limits
    from dlviz.preset import gallery
    from dlviz.training.search import check_trials, load_space, open_study, read_space, sweep, zoom
    from dlviz.training.trainer import json_safe

    check_trials(args.trials)
    doc = read_space(args.space)
    ref = args.preset or (doc.get("preset") if isinstance(doc, dict) else None)
    if not ref:
        raise UserError("space.preset", 'name the preset to search: on the command line, or as the space\'s "preset"')
    exp = gallery.resolve(ref, sys.stdin)
    space = load_space(doc, exp)
    torch.set_num_threads(limits.current().train_threads)

    def show(t) -> None:
        if args.json:
            print(json.dumps(json_safe(t.to_json())), flush=True)
            return
        value = f"val_loss {t.value:.4f}" if t.value is not None else t.state
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        why = f" ({t.reason})" if t.reason and t.state != "complete" else ""
        print(clean(f"trial {t.number}: {value}  {values}  run {t.run_id}{why}"), flush=True)

    if args.zoom:
        _check_writable(args.zoom)
    r = sweep(exp, space, args.trials, storage=args.storage, study_name=args.study, sampler=args.sampler, seed=args.seed, on_trial=show)
    best = r.best.to_json() if r.best is not None else None
    if args.zoom and best is not None:
        narrowed = zoom(space, open_study(space, exp, args.storage, r.study_name)).to_json()
        _write(args.zoom, (json.dumps(narrowed, indent=2) + "\n").encode())
        print(clean(f"the next stage's space, narrowed around the best trials: {args.zoom}"), file=sys.stderr)
    if args.json:
        print(json.dumps(json_safe({"study": r.study_name, "storage": r.storage, "trials": r.study_trials, "best": best, "best_preset": r.best_preset})))
    elif best is None:
        print(clean(f"study {r.study_name}: no trial completed ({r.study_trials} in all)"))
    else:
        print(
            clean(
                f"study {r.study_name} ({r.study_trials} trials in all): best trial {best['trial']}, val_loss {best['val_loss']:.4f}, {best['params']}, run {best['run_id']}"
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
