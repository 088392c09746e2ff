"""The ``rbprep`` command line: Click commands only, each one library call.

Options carry the names of the config fields they set (``--bpe-size`` <-> ``bpe_size``):
a config's options are made from its fields (``config_options``, ``rbprep.options``), so
its defaults, choices and help are written once, in the config.
A user's problem (``RbprepError``) becomes one ``Error: ...`` line and exit status 1;
bad usage is Click's exit status 2.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rbprep import __version__
from rbprep.errors import RbprepError
from rbprep.options import FieldOption, build, field_options
from rbprep.progress import WarningHandler
from rbprep.sizes import parse_size

if TYPE_CHECKING:
    from rbprep.sharding.config import ShardConfig
    from rbprep.train.loop import TrainConfig
    from rbprep.vocab import VocabConfig

F = TypeVar("F", bound=Callable[..., Any])


class ParsedType(click.ParamType):
    """A value parsed from its text by a plain function (an ``Option.type``), whose
    ValueError is Click's usage error."""

    def __init__(self, parse: Callable[[str], Any], name: str = "TEXT") -> None:
        self.parse = parse
        self.name = name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, a value already
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _size_or_auto(text: str) -> int | None:
    """A byte size: ``64MB``, ``500KB``, ``1.5GB``, ``2GiB`` or plain bytes; auto: None."""
    return None if text == "auto" else parse_size(text)


SIZE = ParsedType(_size_or_auto, "SIZE")

# Config fields as options (``rbprep.options``): a config dataclass's fields become a
# command's options where its callback is decorated with ``config_options``.

_CLICK_TYPES: dict[Any, click.ParamType] = {int: click.INT, float: click.FLOAT, str: click.STRING}


def click_option(field: FieldOption) -> click.Option:
    """The Click option of one config field."""
    spec = field.spec
    text, show_default = spec.help, field.default is not None and not field.is_flag
    if spec.show_default is not None:  # Click would show it in parentheses
        text, show_default = f"{text}  [default: {spec.show_default}]", False
    kind: click.ParamType | None = None
    if spec.choices is not None:
        kind = click.Choice(spec.choices)
    elif not field.is_flag:
        kind = _CLICK_TYPES.get(field.type) or ParsedType(field.type, spec.metavar or "TEXT")
    return click.Option(
        [*field.decls, field.field],
        type=kind,
        is_flag=field.is_flag,
        default=field.default,
        nargs=field.nargs,
        show_default=show_default,
        metavar=spec.metavar,
        hidden=spec.hidden,
        help=text,
    )


class _ConfigOptions:
    """A config's options in a command's parameter list, made when first needed."""

    def __init__(self, config: type | Callable[[], type], dest: str) -> None:
        self._config = config
        self.dest = dest

    @functools.cached_property
    def cls(self) -> type:
        return self._config if isinstance(self._config, type) else self._config()

    @functools.cached_property
    def options(self) -> list[click.Option]:
        return [click_option(field) for field in field_options(self.cls)]


def config_options(config: type | Callable[[], type], dest: str = "config") -> Callable[[F], F]:
    """One option per field of the config dataclass ``config`` (see ``rbprep.options``),
    here among the command's options; the callback gets the config as ``dest`` instead.

    ``config`` may be a function that imports and returns the class: it is called when
    the command is first parsed or helped, not when the CLI is imported (the trainer's
    config module imports torch)."""

    def decorator(command: F) -> F:
        params = command.__dict__.setdefault("__click_params__", [])
        params.append(_ConfigOptions(config, dest))
        return command

    return decorator


class ConfigCommand(click.Command):
    """A command with ``config_options``: they become options when its parameters are
    first needed, and its callback gets each config built from them."""

    @property  # type: ignore[override]
    def params(self) -> list[click.Parameter]:
        if any(isinstance(param, _ConfigOptions) for param in self._params):
            self._params = [
                option
                for param in self._params
                for option in (param.options if isinstance(param, _ConfigOptions) else [param])
            ]
        return self._params

    @params.setter
    def params(self, params: list[Any]) -> None:
        self._params = list(params)
        self._configs = [param for param in params if isinstance(param, _ConfigOptions)]

    def invoke(self, ctx: click.Context) -> Any:
        for config in self._configs:
            built = build(config.cls, ctx.params)
            for field in dataclasses.fields(built):
                del ctx.params[field.name]
            ctx.params[config.dest] = built
        return super().invoke(ctx)


class _Group(click.Group):
    command_class = ConfigCommand


def _user_errors(command: F) -> F:
    """Turn RbprepError and OSError into Click's one-line error (exit 1); set up warnings."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logger = logging.getLogger("rbprep")
        handler = WarningHandler()
        logger.addHandler(handler)
        logger.propagate = False
        try:
            return command(*args, **kwargs)
        except RbprepError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # a file system refused: a local path, or a remote store
            reason = str(exc).rstrip(".")
            raise click.ClickException(
                f"{reason}; check the path or URI, its permissions and your credentials"
            ) from exc
        finally:
            logger.removeHandler(handler)

    return wrapper  # type: ignore[return-value]


def corpus_options(command: F) -> F:
    """CORPUS arguments and the reading options every corpus command shares."""
    decorators = [
        click.argument("corpus", nargs=-1, type=click.Path(path_type=str)),
        click.option(
            "--builtin-corpus",
            is_flag=True,
            help="Add rbprep's built-in English corpus (docstrings of Python and its libraries).",
        ),
        click.option(
            "--text-field",
            default="text",
            show_default=True,
            help="Field (JSONL) or column (parquet) that holds the text.",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Make damaged input (binary, truncated, invalid UTF-8, bad records) an error.",
        ),
        click.option(
            "--partition-size",
            type=SIZE,
            default="auto",
            show_default=True,
            help="Text per partition (the unit of work and determinism); auto: the "
            "corpus size / 32, between 1MB and 64MB.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


# The options several commands share, declared once so they mean the same everywhere.


def quiet_option(what: str = "No progress bars (warnings still print).") -> Callable[[F], F]:
    return click.option("--quiet", "-q", is_flag=True, help=what)


def json_option(what: str = "the summary", note: str = "") -> Callable[[F], F]:
    """``--json``: a flag that prints ``what`` as one JSON document on stdout (which
    then holds nothing else). compare-tokenizers alone takes a FILE, and says so."""
    return click.option(
        "--json", "as_json", is_flag=True, help=f"Print {what} as JSON on stdout{note}."
    )


def output_options(command: F) -> F:
    return json_option()(quiet_option()(command))


# Reading a dataset always checks its sizes and invariants; this turns off only the hash.
skip_checksums_option = click.option(
    "--skip-checksums",
    is_flag=True,
    help="Do not hash the shards against the manifest before reading (sizes and "
    "invariants are still checked; a warning says so). For data verified in place.",
)

# Who encodes (never what the ids are), on shard and compare-tokenizers alike.
encoder_option = click.option(
    "--encoder",
    type=click.Choice(["auto", "fast", "reference"]),
    default="auto",
    show_default=True,
    help="Who encodes (never what the ids are): auto takes tokie where it is tested and "
    "agrees with tokenizers, fast takes it on any tokenizer it agrees on, reference is "
    "tokenizers.",
)

check_fraction_option = click.option(
    "--check-fraction",
    type=float,
    default=0.02,
    show_default=True,
    help="Share of the lines (each partition's; compare-tokenizers: each batch's) that "
    "tokenizers encodes again to check the fast encoder, the first always; 0-1. At 0.02 "
    "that costs about as much CPU as tokie encoding everything.",
)


def _open_corpus(
    corpus: tuple[str, ...],
    builtin_corpus: bool,
    text_field: str,
    strict: bool,
    partition_size: int | None,
) -> Any:
    from rbprep.corpus import open_corpus

    paths = list(corpus)
    if builtin_corpus:
        from rbprep.corpus.builtin import builtin_corpus_path

        paths.append(str(builtin_corpus_path()))
    if not paths:
        raise click.UsageError("give CORPUS paths, or --builtin-corpus")
    return open_corpus(paths, text_field=text_field, strict=strict, partition_size=partition_size)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rbprep")
def main() -> None:
    """Prepare data for RoBERTa-style masked-language-model pretraining.

    \b
    Example:
      rbprep train-vocab corpus/ --out vocab
      rbprep demo
    """


def run() -> None:
    """The ``rbprep`` program: ``main``, then an exit that skips the interpreter's last
    garbage collections.

    Python collects every generation while it shuts down, over every object still
    alive; numba's JIT (where the compiled kernels of ``rbprep.aot`` are not built)
    leaves enough of them that this took 0.2-0.3 s of a 1.2 s ``shard`` (README,
    "Performance"). ``gc.freeze`` moves them out of the collector's
    reach, as the process is ending anyway; files are closed by then (every command
    writes in ``with`` blocks), so nothing is lost."""
    try:
        main()
    finally:
        gc.freeze()


@main.command("train-vocab")
@corpus_options
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@config_options(lambda: importlib.import_module("rbprep.vocab").VocabConfig)
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
@output_options
@_user_errors
def train_vocab_command(
    corpus: tuple[str, ...],
    builtin_corpus: bool,
    text_field: str,
    strict: bool,
    partition_size: int | None,
    out: Path,
    config: VocabConfig,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train a byte-level BPE (RoBERTa) and a WordPiece (BERT) tokenizer on CORPUS.

    CORPUS is any mix of files, directories and glob patterns (.txt, .jsonl, .parquet,
    optionally .gz/.bz2/.xz/.zst). Writes OUT/bpe and OUT/wordpiece, each loadable by
    tokenizers.Tokenizer.from_file(OUT/x/tokenizer.json) and by
    transformers.AutoTokenizer.from_pretrained(OUT/x).

    \b
    Example:
      rbprep train-vocab corpus/ 'more/*.jsonl.gz' --out vocab
      rbprep train-vocab --builtin-corpus --out vocab --bpe-size 8000 --only bpe
    """
    from rbprep.executors import limit_malloc_arenas
    from rbprep.vocab import train_vocab

    # Two malloc arenas, not one per trainer thread: the trainers' word counts are freed
    # and grown again across threads, and more arenas held more of it (peak on 202 MB of
    # distinct text, gigabpe: 205 against 278 MB; tokenizers: 416 against 441 MB).
    limit_malloc_arenas(2)
    opened = _open_corpus(corpus, builtin_corpus, text_field, strict, partition_size)
    summary = train_vocab(opened, out, config, force=force, progress=not quiet)
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(summary.report())


@main.command("shard")
@corpus_options
@click.option(
    "--tokenizer",
    required=True,
    type=click.Path(path_type=str),
    help="Tokenizer directory (e.g. vocab/bpe) or tokenizer.json.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=str),
    help="Dataset directory: a path, or a URI such as s3://bucket/data.",
)
@config_options(lambda: importlib.import_module("rbprep.sharding.config").ShardConfig)
@click.option(
    "--workers",
    type=int,
    help="Partitions at once (default: all cores): up to 4 on threads, more in processes.",
)
@click.option(
    "--scheduler",
    help="Run partitions on this Dask cluster (tcp://HOST:PORT); CORPUS and --out must "
    "be paths or URIs every worker reaches. Needs rbprep[dask].",
)
@click.option("--resume", is_flag=True, help="Finish an interrupted run into --out.")
@encoder_option
@check_fraction_option
@click.option("--force", is_flag=True, help="Replace an existing dataset in --out.")
@output_options
@_user_errors
def shard_command(
    corpus: tuple[str, ...],
    builtin_corpus: bool,
    text_field: str,
    strict: bool,
    partition_size: int | None,
    tokenizer: str,
    out: str,
    config: ShardConfig,
    workers: int | None,
    scheduler: str | None,
    resume: bool,
    encoder: str,
    check_fraction: float,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Pack CORPUS into SEQ_LEN-token rows with DUP pre-masked copies, as Arrow shards.

    Tokenises every line with TOKENIZER (text that spells a special token stays
    ordinary text), packs greedily (FULL-SENTENCES by default: rows cross documents
    with a separator), masks each row DUP times (BERT's 80/10/10, specials never), and
    writes OUT/train/, OUT/valid/, OUT/tokenizer.json and OUT/manifest.json. Output is
    byte-identical for any --workers or a Dask --scheduler; --resume finishes an
    interrupted run. CORPUS, TOKENIZER and OUT may be URIs that pyarrow's file systems
    reach (s3://, gs://, abfs://, hdfs://; options in the query, credentials from the
    environment).

    --format megatron writes OUT/train.bin and OUT/train.idx (and valid.*) for Megatron's
    --data-path instead, one sequence per document; --format mds writes MosaicML
    Streaming shards, one sample per packed row. Neither stores masks: those trainers
    mask as they load.

    \b
    Example:
      rbprep shard corpus/ --tokenizer vocab/bpe --out data --dup 10
      rbprep shard --builtin-corpus --tokenizer vocab/wordpiece --out data-wp --whole-word
      rbprep shard s3://bucket/corpus/ --tokenizer vocab/bpe --out s3://bucket/data
      rbprep shard corpus/ --tokenizer vocab/bpe --out data-megatron --format megatron
      rbprep shard corpus/ --tokenizer vocab/bpe --out data-mds --format mds --seq-len 1024
    """
    from rbprep.executors import THREADS_PER_PROCESS, limit_malloc_arenas
    from rbprep.sharding import shard

    # An arena per partition thread: a quarter less peak memory, at the same speed.
    limit_malloc_arenas(max(2, min(workers or os.cpu_count() or 1, THREADS_PER_PROCESS)))
    opened = _open_corpus(corpus, builtin_corpus, text_field, strict, partition_size)
    summary = shard(
        opened,
        tokenizer,
        out,
        config,
        workers=workers,
        scheduler=scheduler,
        resume=resume,
        force=force,
        progress=not quiet,
        encoder=encoder,
        check_fraction=check_fraction,
    )
    click.echo(json.dumps(summary.as_dict(), indent=2) if as_json else summary.report())


@main.command("inspect")
@click.argument("data", type=click.Path(path_type=str))
@click.option("--split", type=click.Choice(["train", "valid"]), default="train", show_default=True)
@click.option("--rows", default=2, show_default=True, help="Sample rows to decode.")
@click.option("--copy", default=0, show_default=True, help="Which masked copy to show.")
@json_option("the inspection")
@skip_checksums_option
@_user_errors
def inspect_command(
    data: str, split: str, rows: int, copy: int, as_json: bool, skip_checksums: bool
) -> None:
    """Show a dataset's numbers and sample rows, masks marked, as the model sees them.

    DATA is a dataset directory from `rbprep shard`: a path, or a URI (s3://...).

    \b
    Example:
      rbprep inspect data --rows 3 --copy 1
    """
    from rbprep.dataset.inspection import inspect

    result = inspect(data, split=split, rows=rows, copy=copy, checksums=not skip_checksums)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())


@main.command("verify")
@click.argument("data", type=click.Path(path_type=str))
@click.option(
    "--retokenize",
    type=float,
    default=0.0,
    metavar="FRACTION",
    help="Also read this share of the corpus partitions (at least one) again from the "
    "corpus, encode them with tokenizers and check the stored ids row by row.",
)
@output_options
@_user_errors
def verify_command(data: str, retokenize: float, quiet: bool, as_json: bool) -> None:
    """Check a dataset: shard checksums and every invariant of every row.

    Recomputes every mask from the seed. Exits 1 naming the first damaged shard and row.
    DATA is a path, or a URI (s3://...). --retokenize needs the corpus the dataset was
    made from, at the paths its manifest names. --json prints {"ok": true, ...counts}, or
    {"ok": false, "error": ...} before exiting 1.

    \b
    Example:
      rbprep verify data
      rbprep verify data --retokenize 0.05
    """
    from rbprep.dataset.verification import verify

    try:
        report = verify(data, retokenize=retokenize, progress=not quiet)
    except RbprepError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        raise
    click.echo(json.dumps({"ok": True, **asdict(report)}, indent=2) if as_json else report.report())


@main.command("pretrain")
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory.")
@config_options(lambda: _train().TrainConfig)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the run's latest checkpoint (with the run's seed, batch and model).",
)
@click.option("--force", is_flag=True, help="Start over in a non-empty --out.")
@quiet_option("No log lines on the terminal.")
@json_option(note=" (log lines go to stderr)")
@skip_checksums_option
@_user_errors
def pretrain_command(
    data: tuple[str, ...],
    out: Path,
    config: TrainConfig,
    resume: bool,
    force: bool,
    quiet: bool,
    as_json: bool,
    skip_checksums: bool,
) -> None:
    """Train a RoBERTa masked-LM on a dataset made by `rbprep shard` (or several).

    Epoch e reads copy e % dup of the masks (copy e of a --masking dynamic dataset),
    rows shuffled from --seed. Logs loss, learning rate, tokens/s and MFU to the
    terminal and OUT/metrics.jsonl (with every step's tokens and sequences);
    checkpoints to OUT/checkpoints/; the final model to OUT/hf/
    (RobertaForMaskedLM.from_pretrained). Several GPUs: torchrun --nproc-per-node N -m
    rbprep pretrain ... (DDP); a run resumes on another number of GPUs with the same
    data. Several DATA with one tokenizer mix by --weights, deterministically (each
    step's line in metrics.jsonl gives its sequences from each: "sources"). DATA on an
    object store (s3://...) is fetched shard by shard as steps need it, into a local
    cache of RBPREP_DATASET_CACHE_BYTES (4 GiB), checked on arrival.

    \b
    Example:
      rbprep pretrain data --out run --model base --recipe bsz8k
      rbprep pretrain data --out run --model base --batch-size 2048 --steps 100000
      rbprep pretrain data --out run --attention document --batch-tokens 1000000
      rbprep pretrain data --out run --model tiny --device cpu --steps 200
      rbprep pretrain web books wiki --weights 3,1,1 --out run --batch-size 2048
    """
    _check_weights(config.weights, len(data))
    summary = _train().pretrain(
        list(data) if len(data) > 1 else data[0],
        out,
        config,
        resume=resume,
        force=force,
        progress=not quiet,
        checksums=not skip_checksums,
        # stdout holds only the JSON document when --json is given.
        log_stream=sys.stderr if as_json else sys.stdout,
    )
    click.echo(json.dumps(asdict(summary), indent=2) if as_json else summary.report())


def _train() -> Any:
    """``rbprep.train.loop``, or how to install what it needs."""
    try:
        from rbprep.train import loop
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in ("torch", "safetensors"):
            raise
        raise click.ClickException(
            f"pretrain needs PyTorch ({missing} is not installed): pip install 'rbprep[train]'"
            " (for a GPU, first the torch build for your CUDA from pytorch.org)"
        ) from exc
    return loop


def _check_weights(weights: tuple[float, ...] | None, datasets: int) -> None:
    """``--weights``: one per dataset, each above 0."""
    if weights is not None and (len(weights) != datasets or not all(w > 0 for w in weights)):
        text = ",".join(f"{w:g}" for w in weights)
        raise click.BadParameter(
            f"{text!r}: give one weight above 0 per dataset ({datasets})", param_hint="--weights"
        )


@main.command("compare-tokenizers")
@corpus_options
@click.option(
    "--tokenizers",
    "tokenizers_dir",
    metavar="DIR",
    type=click.Path(path_type=str),
    help="Output directory of train-vocab: compares its bpe/ and wordpiece/.",
)
@click.option(
    "--tokenizer",
    "tokenizer_paths",
    metavar="PATH",
    multiple=True,
    type=click.Path(path_type=str),
    help="A tokenizer.json or tokenizer directory (NAME=PATH names it); repeatable.",
)
@config_options(lambda: importlib.import_module("rbprep.compare.comparison").CompareConfig)
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    type=click.Path(path_type=str),
    help="Write the full comparison as JSON to FILE ('-': stdout, no table). Unlike the "
    "other commands' --json flag it takes a FILE: the table is the summary here.",
)
@click.option(
    "--markdown",
    "markdown_path",
    metavar="FILE",
    type=click.Path(path_type=Path),
    help="Write the report as Markdown to this file.",
)
@click.option(
    "--plots",
    "plots_dir",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Write PNG plots into this directory (needs the plots extra: matplotlib).",
)
@quiet_option()
@_user_errors
def compare_tokenizers_command(
    corpus: tuple[str, ...],
    builtin_corpus: bool,
    text_field: str,
    strict: bool,
    partition_size: int | None,
    tokenizers_dir: str | None,
    tokenizer_paths: tuple[str, ...],
    config: Any,
    json_path: str | None,
    markdown_path: Path | None,
    plots_dir: Path | None,
    quiet: bool,
) -> None:
    """Measure tokenizers side by side on CORPUS: tokens, rows, splits, [UNK], losses.

    Counts over the sentence units shard tokenises, once per tokenizer: vocabulary use,
    bytes and characters per token, fertility (tokens per word), words split, [UNK]
    rates, exact and normalised round trips, SEQ_LEN rows and padding as shard packs
    them, encode speed and Rényi efficiency; overall and per file, with vocabulary
    overlap and ratios between tokenizers, sample sentences and frequent tokens.
    Definitions: docs/compare.md.

    \b
    Example:
      rbprep compare-tokenizers corpus/ --tokenizers vocab --markdown report.md
      rbprep compare-tokenizers corpus/ --tokenizers vocab \\
          --tokenizer roberta=hf/roberta-base --plots plots --json report.json
    """
    from rbprep.compare import compare_tokenizers, train_vocab_tokenizers
    from rbprep.storage import check_output_directory

    named: list[tuple[str, str] | str] = []
    if tokenizers_dir is not None:
        named.extend(train_vocab_tokenizers(tokenizers_dir))
    for item in tokenizer_paths:
        name, sep, path = item.partition("=")
        named.append((name, path) if sep and name and not Path(item).exists() else item)
    if not named:
        raise click.UsageError("give --tokenizers DIR (from train-vocab) or --tokenizer PATH")
    if plots_dir is not None:
        check_output_directory(plots_dir, "--plots")
    opened = _open_corpus(corpus, builtin_corpus, text_field, strict, partition_size)
    comparison = compare_tokenizers(opened, named, config, progress=not quiet)
    plots = comparison.write_plots(plots_dir) if plots_dir is not None else []
    if markdown_path is not None:
        comparison.write_markdown(markdown_path, plots)
    if json_path == "-":
        click.echo(json.dumps(comparison.as_dict(), indent=2, ensure_ascii=False))
        return
    if json_path is not None:
        comparison.write_json(json_path)
    click.echo(comparison.report())
    written = [str(p) for p in (json_path, markdown_path) if p is not None]
    if plots:
        written.append(f"{plots_dir}/ ({len(plots)} plots)")
    if written:
        click.echo("-> " + ", ".join(written))


@main.command("demo")
@click.option(
    "--out",
    default="demo-out",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the demo writes.",
)
@quiet_option("No progress bars.")
@_user_errors
def demo_command(out: Path, quiet: bool) -> None:
    """Run the pipeline on the built-in corpus and show what it made.

    Builds the built-in corpus (about 4 MB of docstrings of Python and its libraries,
    cached after the first run), trains both tokenizers on it into OUT/vocab (small
    sizes, to be quick), shards it with the BPE into OUT/data (seq 512, 10 masked
    copies) and shows `inspect` of it, compares the two tokenizers into OUT/compare
    (table, JSON, Markdown, plots), and pretrains a tiny model for 30 CPU steps into
    OUT/run with a fill-mask example. What an earlier demo wrote there is replaced.

    \b
    Example:
      rbprep demo --out /tmp/rbprep-demo
    """
    from rbprep.demo import run_demo

    click.echo(run_demo(out, progress=not quiet))
