"""Commands of the classifier: ``train``, ``evaluate``, ``summary`` and ``search``."""

from __future__ import annotations

from pathlib import Path

import click

from neuromask.cli.display import console, print_table
from neuromask.cli.options import (
    cache_dir_option,
    device_option,
    maps_options,
    overwrite_option,
    quiet_option,
)

_QUIET = quiet_option()
_CACHE = cache_dir_option()


@click.command()
@click.argument("caps", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("split_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file overriding the default settings (see the README).",
)
@click.option(
    "--split",
    "splits",
    type=click.IntRange(min=0),
    multiple=True,
    help="Train only this split (repeatable). Default: every split-<k> in SPLIT_DIR.",
)
@click.option("--runs", type=click.IntRange(min=1), default=1, help="Runs (seeds) per split.")
@click.option("--dartel-group", default=None, metavar="G", help="Use the DARTEL maps of group G.")
@_CACHE
@_QUIET
def train(
    caps: Path,
    split_dir: Path,
    out: Path,
    config_path: Path | None,
    splits: tuple[int, ...],
    runs: int,
    dartel_group: str | None,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """Train CNNs on every split of SPLIT_DIR; write OUT/split-<k>/run-<r>/.

    SPLIT_DIR is what `neuromask split` writes, or what `clinicadl tsvtools kfold` (a
    <N>_fold folder) or `clinicadl tsvtools split` (one split) writes; the layout found is
    printed. Each run folder holds model.safetensors (best validation balanced accuracy),
    model_best_loss.safetensors, config.json, training.tsv and validation_predictions.tsv.
    Rerun the same command after an interruption to resume.
    """
    from neuromask.io.layout import SplitLayout
    from neuromask.train.config import load_train_config
    from neuromask.train.cross_validation import train_splits

    config = load_train_config(config_path)
    if split_dir.is_dir() and SplitLayout(split_dir).splits():
        console.print(SplitLayout(split_dir).describe())
    results = train_splits(
        caps,
        split_dir,
        out,
        config,
        splits=list(splits) or None,
        runs=runs,
        dartel_group=dartel_group,
        cache_dir=cache_dir,
        progress=not quiet,
    )
    for result in results:
        state = (
            "skipped (already done)"
            if result.skipped
            else ("resumed" if result.resumed else "trained")
        )
        console.print(
            f"{result.out}: {state}, best epoch {result.best_epoch + 1}, validation balanced accuracy "
            f"{result.validation['balanced_accuracy']:.3f}"
        )


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("caps", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("tsv", type=click.Path(path_type=Path))
@click.option(
    "--name", required=True, help="Name of this evaluation, e.g. test or aibl: MODEL_DIR/NAME/."
)
@overwrite_option(help="Replace MODEL_DIR/NAME if it exists.")
@device_option(help="Where to run the CNN.")
@_CACHE
@_QUIET
@maps_options()
def evaluate(
    model_dir: Path,
    caps: Path,
    tsv: Path,
    name: str,
    overwrite: bool,
    device: str,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """Score the model of MODEL_DIR on the sessions of TSV.

    Writes MODEL_DIR/NAME/predictions.tsv (participant, session, true and predicted label,
    P(AD)) and MODEL_DIR/NAME/metrics.json (balanced accuracy, accuracy, sensitivity,
    specificity, ROC AUC).
    """
    from neuromask.train.evaluate import evaluate_model

    metrics = evaluate_model(
        model_dir,
        caps,
        tsv,
        name,
        overwrite=overwrite,
        cache_dir=cache_dir,
        device=device,
        progress=not quiet,
    )
    console.print(
        f"{model_dir / name}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "n_sessions")
    )


@click.command()
@click.argument("train_out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Evaluation names to include (repeatable), e.g. test, aibl.",
)
def summary(train_out: Path, names: tuple[str, ...]) -> None:
    """Balanced accuracies of every split and run of TRAIN_OUT, with their mean and SD.

    Writes TRAIN_OUT/summary.tsv.
    """
    from neuromask.io.participants import write_tsv
    from neuromask.train.summary import collect_results

    table = collect_results(train_out, names)
    write_tsv(table, train_out / "summary.tsv")
    print_table(table, title="Balanced accuracy")


@click.command()
@click.argument("caps", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("split_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=20,
    help="Completed trials the study should hold; every worker stops once it does.",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage URL, e.g. postgresql://user@host/db for several machines. "
    "Default: sqlite:///OUT/search.db.",
)
@click.option("--study-name", default="neuromask-search", help="Study name inside the storage.")
@click.option(
    "--split", type=click.IntRange(min=0), default=0, help="The split each trial trains on."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file with the settings outside the search space (epochs, patience, seed) and an optional [search] table that narrows the space.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of this worker's sampler (default: from the clock).",
)
@click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=60,
    metavar="S",
    help="Seconds between a running trial's heartbeats; a trial silent for 2S is retried.",
)
@_CACHE
@_QUIET
def search(
    caps: Path,
    split_dir: Path,
    out: Path,
    trials: int,
    storage: str | None,
    study_name: str,
    split: int,
    config_path: Path | None,
    seed: int | None,
    heartbeat: int,
    cache_dir: Path | None,
    quiet: bool,
) -> None:
    """Random search over the paper's space (architecture, learning rate, weight decay,
    batch size, intensity normalisation, and the data preprocessing when [search]
    lists DARTEL maps), one worker per call.

    Start the same command on several machines with one --storage URL to share the work.
    Writes OUT/trials/<key>/ per trial and OUT/best_config.toml, which `neuromask train`
    takes as --config.
    """
    import optuna

    from neuromask.train.search import load_search_config, run_search

    base, space = load_search_config(config_path)

    study = run_search(
        caps,
        split_dir,
        out,
        trials=trials,
        base=base,
        space=space,
        storage=storage,
        study_name=study_name,
        split=split,
        seed=seed,
        heartbeat_s=heartbeat,
        cache_dir=cache_dir,
        progress=not quiet,
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    console.print(f"Study {study_name!r}: {len(done)} completed trials.")
    if done:
        best = study.best_trial
        console.print(
            f"Best: trial {best.number}, validation balanced accuracy {best.value:.3f} "
            f"-> {out / 'best_config.toml'}"
        )
