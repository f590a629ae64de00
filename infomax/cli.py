"""The `infomax` command line. Each verb lives in its own module; this file only routes."""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(quick=args.quick, out=Path(args.out))


def _data_check(args: argparse.Namespace) -> int:
    from .data.check import run

    return run(args.name, args.data_root, download=args.download, image_size=args.image_size, workers=args.workers)


def _data_pack(args: argparse.Namespace) -> int:
    from .data.shards import pack

    manifest = pack(Path(args.src), Path(args.out), args.shard_size)
    for split, shards in manifest["splits"].items():
        print(f"{split}: {sum(s['images'] for s in shards.values())} images in {len(shards)} shards")
    return 0


def _finetune_config(args: argparse.Namespace, resume: bool = False, own: tuple[str, ...] = ()):
    """The run's config: the recipe (METHOD-cpu by default) or, with --resume, the run's config.yaml; then
    the flags (but the verb's `own`), then --set; pretrain's resolution, so every training verb resumes by one rule."""
    from .engine.finetune import FLAGS, new_head, over_base
    from .engine.pretrain import resolve

    flags = {key: getattr(args, word) for word, key in FLAGS.items() if word not in own and getattr(args, word, None) is not None}
    flags = {k: v for k, v in flags.items() if v is not False or k == "finetune.baseline_check"}  # an unset store_true
    out = Path(args.out)
    if resume and (out / "config.json").is_file() and not (out / "config.yaml").is_file():
        raise ValueError(f"--resume: {out} was written by an earlier infomax (config.json, before the config tree); its "
                         f"head still predicts (infomax predict --run {out}), but it cannot resume. Start a new run.")

    def preset(tree: dict) -> None:
        merged = over_base(tree, args.method)
        tree.clear()
        tree.update(merged)
        new_head(tree.setdefault("finetune", {}), args.head)

    method = args.method if resume or args.recipe else args.method or "twinturbo"
    return resolve(args.recipe, method, args.set or [], flags, out, resume, preset=preset, verb="finetune")


def _finetune(args: argparse.Namespace) -> int:
    from .engine.finetune import finetune

    config = _finetune_config(args, args.resume)
    metrics = finetune(config, Path(args.out), resume=args.resume, overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in metrics.items() if not k.startswith("test_class/")}, indent=1))
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict

    failed = 0
    for row in predict(Path(args.run), args.images):
        print(json.dumps(row), flush=True)
        failed += "error" in row
    if failed:
        print(f"infomax predict: {failed} image(s) could not be read (their rows say why).", file=sys.stderr)
    return 1 if failed else 0


def _evaluate(args: argparse.Namespace) -> int:
    from .eval.run import evaluate

    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    metrics = evaluate(args.encoder, args.dataset, Path(args.out), protocols=protocols, data_root=args.data_root,
                       resolution=args.resolution, overwrite=args.overwrite, download=args.download, image_size=args.image_size,
                       source=args.source or "auto")
    print(json.dumps(metrics, indent=1))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .eval.embed import embed

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    summary = embed(args.encoder, args.dataset, Path(args.out), split=args.split, data_root=args.data_root,
                    resolution=args.resolution, batch_size=args.batch_size, overwrite=args.overwrite, download=args.download,
                    image_size=args.image_size, source=args.source or "auto")
    print(json.dumps({k: v for k, v in summary.items() if k != "classes"}, indent=1))
    print(f"features: {Path(args.out) / 'features.safetensors'}, files: {Path(args.out) / 'files.txt'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .models.export import export

    print(json.dumps(export(args.encoder, Path(args.out), args.format, args.resolution), indent=1))
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from .eval.run import analyze

    table = analyze(args.encoder, args.dataset, Path(args.out), split=args.split, data_root=args.data_root,
                    resolution=args.resolution, overwrite=args.overwrite, download=args.download, image_size=args.image_size,
                    source=args.source or "auto")
    print(json.dumps(table, indent=1, default=str))
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .eval.report import write_report

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else runs[0] / "report.html"
    print(f"report: {write_report(runs, out, title=args.title)}")
    return 0


def add_evaluation(verbs) -> None:
    for verb, handler, text in (("evaluate", _evaluate, "kNN, linear probe and few-label accuracy of an encoder"),
                                ("analyze", _analyze, "representation geometry, plots and a report")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("--encoder", "--backbone", dest="encoder", required=True,
                       help="efficientnet-lite0, hf:<model id>, a .safetensors encoder of ours, or resnet18/vit-tiny/...")
        p.add_argument("--dataset", required=True)
        add_data_root(p)
        add_source(p)
        p.add_argument("--resolution", type=int, help="resize images to this side (default: 4x the images' side in steps of 32, "
                                                      "at most the encoder's input size)")
        p.add_argument("--out", required=True, metavar="DIR")
        p.add_argument("--overwrite", action="store_true")
        if verb == "evaluate":
            p.add_argument("--protocol", default="knn,linear,fewshot", help="comma-separated: knn, linear, fewshot")
        else:
            p.add_argument("--split", default="test")
        p.set_defaults(handler=handler)
    e = verbs.add_parser("embed", help="the features of every image as safetensors, with its file list, for other tools")
    e.add_argument("--encoder", "--backbone", dest="encoder", required=True,
                   help="efficientnet-lite0, hf:<model id>, a .safetensors encoder of ours, or resnet18/vit-tiny/...")
    e.add_argument("--dataset", required=True, help="a built-in dataset, imagefolder (your images: --data-root DIR) or shards")
    add_data_root(e)
    add_source(e)
    e.add_argument("--split", default="test")
    e.add_argument("--resolution", type=int, help="resize images to this side (default: as evaluate)")
    e.add_argument("--batch-size", type=int, default=256, metavar="N")
    e.add_argument("--out", required=True, metavar="DIR", help="features.safetensors, files.txt, embed.json")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(handler=_embed)
    x = verbs.add_parser("export", help="an encoder as TorchScript or ONNX: images in [0, 1] -> pooled features")
    x.add_argument("--encoder", "--backbone", dest="encoder", required=True,
                   help="efficientnet-lite0, hf:<model id>, a .safetensors encoder of ours, or resnet18/vit-tiny/...")
    x.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    x.add_argument("--resolution", type=int, help="the images' side the graph is traced at (default: the encoder's input size, else 224)")
    x.add_argument("--out", required=True, metavar="FILE")
    x.set_defaults(handler=_export)
    r = verbs.add_parser("report", help="one self-contained HTML page for one or more run directories")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR")
    r.add_argument("--out", metavar="FILE", help="default: RUN_DIR/report.html of the first run")
    r.add_argument("--title")
    r.set_defaults(handler=_report)


PRETRAIN_FLAGS = {"dataset": "data.dataset", "data_root": "data.data_root", "resolution": "data.resolution",
                  "image_size": "data.image_size", "download": "data.download", "source": "data.source",
                  "epochs": "schedule.epochs", "max_steps": "schedule.max_steps", "batch_size": "optim.batch_size",
                  "lr": "optim.lr", "seed": "run.seed", "checkpoint_every": "run.checkpoint_every", "accelerator": "run.accelerator",
                  "devices": "run.devices", "num_nodes": "run.num_nodes", "precision": "run.precision",
                  "compile": "run.compile", "abort_on_collapse": "run.abort_on_collapse"}


def _pretrain(args: argparse.Namespace) -> int:
    from .engine.pretrain import pretrain, resolve

    flags = {key: getattr(args, name) for name, key in PRETRAIN_FLAGS.items()}
    flags = {k: (v or None) if isinstance(v, bool) else v for k, v in flags.items()}
    out = Path(args.out)
    if args.add and args.resume:
        raise ValueError("--resume takes the add-ons of the run's config.yaml; drop --add.")
    from .methods.addons import parse
    from .runs.slurm import resume_requeued

    resume = resume_requeued(out, args.resume, args.overwrite)
    requeued = resume and not args.resume  # the job's own command again: its recipe made the run's config.yaml
    if args.add and requeued:
        _same_addons(out, [parse(a)["name"] for a in args.add])
    preset = (lambda tree: tree.__setitem__("addons", [parse(a) for a in args.add])) if args.add and not resume else None
    config = resolve(None if requeued else args.recipe, args.method, args.set or [], flags, out, resume, preset=preset)
    result = pretrain(config, out, resume=resume, overwrite=args.overwrite)
    if result:
        print(json.dumps(result, indent=1))
        print(f"encoder: {out / 'encoder.safetensors'}, report: {out / 'report.html'}")
    return 0


def _same_addons(out: Path, names: list[str]) -> None:
    from .engine.pretrain import saved_tree

    saved = [a["name"] for a in saved_tree(out).get("addons", [])]
    if saved != names:
        raise ValueError(f"{out} holds an unfinished run with add-ons {saved}, and this job asks for {names}; "
                         "pass the run's add-ons, or another --out for a new run.")


def _continue(args: argparse.Namespace) -> int:
    from .engine.continued import FLAGS, continue_pretraining, resolve

    if not args.method and not args.recipe and not args.resume and not (args.init and Path(args.init, "config.yaml").is_file()):
        raise ValueError("name the base method: --method vicreg (or swav, simsiam, any of `infomax recipes`); "
                         "an --init pretrain run continues its own method without it.")
    flags = {key: getattr(args, name) for name, key in PRETRAIN_FLAGS.items() if hasattr(args, name)}
    flags = {k: (v or None) if isinstance(v, bool) else v for k, v in flags.items()}
    out = Path(args.out)
    from .methods.addons import parse
    from .runs.slurm import resume_requeued

    resume = resume_requeued(out, args.resume, args.overwrite)
    continued = {k: getattr(args, k) for k in FLAGS if k != "init"}
    if resume and not args.resume:  # a requeued job: its --init, --add and continue flags made the run's config.yaml
        if args.add:
            _same_addons(out, [parse(a)["name"] for a in args.add])
        config = resolve(None, args.method, None, [], args.set or [], flags, {k: None for k in continued}, out, True)
    else:
        config = resolve(args.init, args.method, args.recipe, args.add or [], args.set or [], flags, continued, out, resume)
    result = continue_pretraining(config, out, resume=resume, overwrite=args.overwrite)
    if result:
        print(json.dumps({k: v for k, v in result.items() if not k.startswith(("before/", "after/"))}, indent=1))
        print(f"encoder: {out / 'encoder.safetensors'}, report: {out / 'report.html'}")
    return 0


def add_continue(verbs) -> None:
    from .engine.pretrain import ACCELERATORS, PRECISIONS
    from .methods import METHODS
    from .config import ContinueConfig
    from .methods.addons import ADDONS

    p = verbs.add_parser("continue", help="continued pre-training of a trained encoder with add-on losses (E2MC), "
                         "evaluated before and after",
                         description="Options left out take the base recipe's value, with continued pre-training's lr "
                                     "scale, constant lr and 10 epochs (`infomax recipes NAME` prints a recipe).")
    p.add_argument("--init", help="the encoder to start from: efficientnet-lite0, hf:<id>, an encoder .safetensors or a pretrain run")
    p.add_argument("--method", choices=list(METHODS), help="the base method; its recipe is METHOD-cpu unless --recipe")
    p.add_argument("--recipe", metavar="NAME|FILE", help="the base method's recipe (its lr is scaled by --lr-scale)")
    p.add_argument("--add", action="append", metavar="NAME[:key=value,...]",
                   help=f"an add-on loss ({', '.join(ADDONS)}), e.g. e2mc or e2mc:beta=1,gamma=25,space=hypersphere (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any setting, e.g. optim.lr=0.001 (repeatable)")
    p.add_argument("--dataset", help="the images to continue on (and evaluate with)")
    add_data_root(p)
    add_source(p)
    for name, kind, text in (("epochs", int, "passes over the training images (default 10, the paper's)"),
                             ("batch-size", int, "global batch (default: the recipe's, 256 in the METHOD-cpu ones; the E2MC paper's is 512)"),
                             ("resolution", int, "side of the views (default: the feature cache's for this encoder and data)"),
                             ("seed", int, "seeds heads, shuffling and view pairing"), ("max-steps", int, "stop after this many steps"),
                             ("checkpoint-every", int, "optimiser steps between checkpoints"), ("devices", int, "processes (DDP when more than 1)"),
                             ("num-nodes", int, "nodes")):
        p.add_argument(f"--{name}", dest=name.replace("-", "_"), type=kind, help=text)
    p.add_argument("--lr-scale", dest="lr_scale", type=float, help=f"times the recipe's lr (default {ContinueConfig.lr_scale}, the paper's)")
    p.add_argument("--train-from", dest="train_from", metavar="BLOCK",
                   help="freeze the blocks before BLOCK and cache their activations (the CPU protocol); e.g. block15 of efficientnet-lite0")
    p.add_argument("--cached-views", dest="cached_views", type=int, help=f"augmented views cached per image and view, with --train-from (default {ContinueConfig.cached_views})")
    p.add_argument("--train-images", dest="train_images", type=int, help="continue on a seeded subset of this many training images")
    p.add_argument("--accelerator", choices=ACCELERATORS)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    p.set_defaults(handler=_continue, eval_seeds=None)


def _recipes(args: argparse.Namespace) -> int:
    """`infomax recipes`: each recipe, its description and its sources line; with NAME, that recipe's
    file and its resolved config tree (every default filled in) as YAML."""
    import yaml

    from . import config

    if args.name:
        path = Path(args.name) if Path(args.name).suffix in (".yaml", ".yml") else config.RECIPES / f"{args.name}.yaml"
        tree = config.to_dict(config.build_config(config.load_recipe(args.name)))
        print(f"# {path.resolve() if path.is_file() else path}")
        print(yaml.safe_dump(tree, sort_keys=False), end="")
        return 0
    for name in config.recipe_names():
        print(f"{name:24s} {config.describe(name)}")
        sources = (yaml.safe_load((config.RECIPES / f"{name}.yaml").read_text()) or {}).get("sources") or {}
        print(f"{'':24s} sources: " + "; ".join(f"{k}: {v}" for k, v in sources.items()))
    return 0


def add_pretrain(verbs) -> None:
    from .engine.pretrain import ACCELERATORS, PRECISIONS
    from .methods import METHODS
    from .methods.addons import ADDONS

    p = verbs.add_parser("pretrain", help=f"self-supervised pretraining of an encoder ({', '.join(METHODS)})",
                         description="Options left out take the recipe's value (`infomax recipes NAME` prints them).")
    p.add_argument("--method", choices=list(METHODS), help="the method; its default recipe is METHOD-cpu")
    p.add_argument("--recipe", metavar="NAME|FILE", help="a recipe from `infomax recipes` or a YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any setting, e.g. optim.lr=0.1 (repeatable)")
    p.add_argument("--add", action="append", metavar="NAME[:key=value,...]",
                   help=f"an add-on loss on the method's embeddings ({', '.join(ADDONS)}), as for `infomax continue`")
    p.add_argument("--dataset", help="any dataset the data layer knows (cifar10, fashion-mnist, digits, mnist-5k, ...)")
    add_data_root(p)
    add_source(p)
    for name, kind, text in (("epochs", int, "passes over the training images"), ("max-steps", int, "stop after this many optimiser steps"),
                             ("lr", float, "base learning rate (optim.lr)"),
                             ("batch-size", int, "global batch, split over devices"), ("resolution", int, "side of the views in pixels"),
                             ("seed", int, "seeds weights, shuffling and augmentation"),
                             ("checkpoint-every", int, "optimiser steps between checkpoints"),
                             ("devices", int, "processes per node (DDP when more than 1)"), ("num-nodes", int, "nodes (torchrun / SLURM)")):
        p.add_argument(f"--{name}", dest=name.replace("-", "_"), type=kind, help=text)
    p.add_argument("--accelerator", choices=ACCELERATORS)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--compile", action="store_true", help="torch.compile the method")
    p.add_argument("--abort-on-collapse", dest="abort_on_collapse", action="store_true", help="stop when the embedding collapses")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its config.yaml; only epochs, steps, checkpointing, logging and data loading may change)")
    p.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    p.set_defaults(handler=_pretrain)
    r = verbs.add_parser("recipes", help="list the shipped training recipes with their sources; NAME: its resolved config")
    r.add_argument("name", nargs="?", metavar="NAME|FILE", help="print this recipe's path and resolved config tree as YAML")
    r.set_defaults(handler=_recipes)


def _ablate(args: argparse.Namespace) -> int:
    from .engine.ablate import ablate

    summary = ablate(_finetune_config(args, own=("labels",)), Path(args.out), labels=_ints(args.labels), seeds=_ints(args.seeds))
    print((Path(args.out) / "ablation.md").read_text())
    print(f"table: {Path(args.out) / 'ablation.md'}, chart: {Path(args.out) / 'ablation.png'} ({summary['total_seconds'] / 60:.1f} min)")
    return 0


def _grid(text: str) -> int | str:
    if text == "native":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a grid side such as 2, 0 or 'native', got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 100,1000, got {text!r}.") from None


def add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR", help="where datasets live (default: $INFOMAX_DATA, else ~/.cache/infomax/data)")
    parser.add_argument("--download", action="store_true", help="fetch missing public datasets (needs network)")
    parser.add_argument("--image-size", type=int, metavar="N", help="imagefolder only: resize images to N x N")


def add_source(parser: argparse.ArgumentParser) -> None:
    from .config import SOURCES

    parser.add_argument("--source", choices=SOURCES, help="decoded: decode once into a cache; stream: decode as read, in "
                        "bounded memory; auto (default): shards stream, an image folder streams when its cache would pass "
                        "data.decoded_max_gb")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Options left out take the recipe's value (`infomax recipes twinturbo-cpu` prints them)."""
    from .data.feature_batches import AUGMENTATIONS
    from .engine.finetune import DEVICES
    from .methods.fewlabel import HEADS

    p.add_argument("--recipe", metavar="NAME|FILE", help="twinturbo-cpu (default), twinturbo-paper (App. B, a GPU job), "
                   "fixmatch-cpu, or a YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any setting, e.g. finetune.min_steps=0 (repeatable)")
    p.add_argument("--backbone", "--encoder", dest="backbone",
                   help="efficientnet-lite0, hf:<model id>, or a .safetensors encoder of ours (default: the recipe's, efficientnet-lite0)")
    p.add_argument("--dataset", help="a built-in dataset, imagefolder (your images: --data-root DIR) or shards")
    add_data_root(p)
    add_source(p)
    texts = {"lr": "AdamW learning rate", "epochs": "passes over the unlabelled images",
             "min-steps": "more epochs when the epochs give fewer steps than this (0: epochs alone)", "batch-size": "unlabelled images per step",
             "resolution": "side the backbone sees (default: 4x the images' side in steps of 32, at most the backbone's input size)",
             "views": "augmented views cached per image, a different one each epoch",
             "warmup-steps": "linear warm-up steps (shortened to a tenth of a run shorter than twice this)"}
    for name, kind in (("lr", float), ("epochs", int), ("min-steps", int), ("batch-size", int), ("resolution", int), ("views", int),
                       ("warmup-steps", int)):
        p.add_argument(f"--{name}", dest=name.replace("-", "_"), type=kind, help=texts[name])
    p.add_argument("--head", choices=sorted(HEADS), help="cpu: pooled features into a 512-wide latent, no token block; "
                   "paper: App. B (a transformer block on every patch token, latent 8000)")
    p.add_argument("--token-grid", dest="token_grid", type=_grid, metavar="G|native",
                   help="patch tokens pooled to a G x G grid, 'native' for the backbone's own, 0 for none (default: the head's)")
    p.add_argument("--augmentation", choices=AUGMENTATIONS, help="where augmented views come from: cached (--views K backbone "
                   "passes per image, once) or tokens (crops of the plain view's token map, free)")
    p.add_argument("--device", choices=DEVICES, help="where the backbone and the head run (auto: cuda when there is one)")
    for term in ("critic", "latent", "augment"):
        p.add_argument(f"--{term}", type=float, metavar="WEIGHT", help=f"weight of the {term} term (0 turns it off)")
    p.add_argument("--out", required=True, metavar="DIR")


def add_finetune(verbs) -> None:
    text = "Options left out take the recipe's value (`infomax recipes twinturbo-cpu` prints it)."
    a = verbs.add_parser("ablate", help="the TwinTURBO ablation ladder (paper Fig. 2) with baselines", description=text)
    a.add_argument("method", choices=["twinturbo"])
    add_training_options(a)
    a.add_argument("--labels", default="100,1000", help="comma-separated label counts")
    a.add_argument("--seeds", default="42,1337,3435", help="comma-separated seeds")
    a.set_defaults(handler=_ablate)
    p = verbs.add_parser("finetune", help="TwinTURBO on a frozen backbone with few labels", description=text)
    add_training_options(p)
    p.add_argument("--labels", type=int, help="labelled images, balanced over classes (default: the recipe's)")
    p.add_argument("--labels-file", dest="labels_file", metavar="CSV",
                   help="`image,class` lines (training-split row, class name or id) instead of a balanced draw")
    p.add_argument("--seed", type=int, help="seeds the labelled draw and the head (default: the recipe's)")
    p.add_argument("--method", choices=["twinturbo", "fixmatch"], help="the head's loss; its recipe is METHOD-cpu unless --recipe")
    p.add_argument("--task-loss", dest="task_loss", choices=["cat-cross", "cat-twin", "bin-cross"])
    p.add_argument("--rescale", choices=["softmax", "sigmoid"])
    p.add_argument("--no-baseline-check", dest="baseline_check", action="store_false", default=None,
                   help="skip training the cat-cross baseline on the same labels (in OUT/baseline) to compare on validation")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its config.yaml; only epochs, steps, checkpointing, logging, data loading and the device may change)")
    p.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    p.set_defaults(handler=_finetune)
    q = verbs.add_parser("predict", help="classify images with a fine-tuned run")
    q.add_argument("--run", required=True, metavar="DIR")
    q.add_argument("images", nargs="+", help="image files or folders")
    q.set_defaults(handler=_predict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infomax", description="Representation learning by maximising mutual information.")
    parser.add_argument("--version", action="version", version=f"infomax {__import__('infomax').__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    demo = verbs.add_parser("demo", help="TwinTURBO end to end on MNIST-5k with EfficientNet-Lite0 (a few minutes)")
    demo.add_argument("--quick", action="store_true", help="fewer images and steps, well under a minute")
    demo.add_argument("--out", default="runs/demo", metavar="DIR")
    demo.set_defaults(handler=_demo)

    data = verbs.add_parser("data", help="inspect datasets").add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    check = data.add_parser("check", help="find, decode and verify a dataset; print a JSON summary")
    check.add_argument("name", help="cifar10, cifar100, mnist, fashion-mnist, svhn, stl10, imagefolder, shards, digits, mnist-5k")
    add_data_root(check)
    check.add_argument("--workers", type=int, metavar="N", help="processes that decode image files (default: the machine's cores; 0: none)")
    check.set_defaults(handler=_data_check)
    pack = data.add_parser("pack", help="write an image folder as checksummed webdataset tar shards (resumable)")
    pack.add_argument("src", help="an image folder (class/image.jpg, train|val|test/class/image.jpg, or flat)")
    pack.add_argument("out", help="the shards' folder: SPLIT-000000.tar, classes.txt, manifest.json")
    pack.add_argument("--shard-size", type=int, default=1000, metavar="N", help="images per shard (default 1000)")
    pack.set_defaults(handler=_data_pack)
    add_pretrain(verbs)
    add_continue(verbs)
    add_finetune(verbs)
    add_evaluation(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt as stop:
        print(f"interrupted{': ' + str(stop) if str(stop) else ''}", file=sys.stderr)
        return 130
    except FloatingPointError as error:  # a diverged run: the message names the step, the term and the fix
        print(f"infomax {args.verb}: {error}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # user mistakes: the message names the fix
        print(f"infomax {args.verb}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"infomax {args.verb}: the disk is full ({error}); the last complete files are intact. Free space, "
              "then rerun (with --resume where the verb has it).", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
