"""Command line of a trained multi-task model: `python -m modeling_mtl {predict,embed,evaluate,export-onnx} ...`.

    python -m modeling_mtl predict --model outputs/demo "Angela Merkel flew to Paris" "Buy a new laptop"
    accelerate launch -m modeling_mtl predict --model outputs/atis --input big.jsonl --output out.jsonl  # sharded
    cat texts.txt | python -m modeling_mtl predict --model outputs/demo > predictions.jsonl
    cat texts.txt | python -m modeling_mtl predict --model outputs/demo --output-format label-studio > tasks.json
    python -m modeling_mtl embed --model outputs/demo "A sentence to embed."
    python -m modeling_mtl evaluate --model outputs/demo --data_dir data/demo --split test
    python -m modeling_mtl evaluate --model outputs/atis --config configuration/atis.yaml --json
    python -m modeling_mtl evaluate --model outputs/atis --config configuration/atis.yaml --token_decoding argmax
    python -m modeling_mtl inspect-data configuration/atis.yaml                           # before training
    python -m modeling_mtl export-onnx --model outputs/atis --output outputs/atis-onnx    # needs the onnx extra
    python -m modeling_mtl serve --model outputs/atis --port 8000 --metrics              # needs the serve extra

`predict` and `embed` print one JSON object / array per text (JSON Lines, in input order); with no TEXT they read
one text per line from standard input (blank lines skipped), streaming. `evaluate` reads any data source that
train_mtl.py accepts (`--data_dir` with `--data_format`, `--dataset_name`, column options, or the data keys of a run
file with `--config`) and prints the metric table (`--json`: one JSON object). `export-onnx` writes `model.onnx`
and its int8 quantisation `model_int8.onnx` (modeling_mtl/onnx_export.py). `serve` answers HTTP requests with
dynamic batching (modeling_mtl/serving.py).

The model is loaded with this package's classes (`MultiTaskModel.from_pretrained`): no code from the model folder
runs. Errors (a missing folder, a folder that holds another kind of model, an empty input, a missing split) end with
a one-line message on standard error and exit status 2; arguments are checked before any model or data is loaded.
"""

import argparse
import json
import os
import sys

from .schema_mtl import AGGREGATION_STRATEGIES, HUB_ID, MODEL_TYPE, TASKS, TOKEN_DECODINGS

EXIT_USAGE = 2
DATA_KEYS = (
    "data_dir",
    "data_format",
    "dataset_name",
    "dataset_config_name",
    "text_column",
    "tokens_column",
    "sentence_label_column",
    "tags_column",
)
SPLIT_CHOICES = ("train", "validation", "test")
ONNX_CHOICES = ("fp32", "int8")
# `serve`'s limits, the fields of serving.ServeOptions (`--batch_size` is its max_batch_size).
SERVE_OPTIONS = (
    ("max_wait_ms", float, 5.0, "how long a text waits for others to share its forward pass, in ms"),
    ("max_queue", int, 256, "most texts waiting for the model; past it, 503 with Retry-After"),
    ("max_texts_per_request", int, 64, "most texts in one request (413 past it)"),
    ("max_chars_per_text", int, 2000, "most characters in one text (422 past it)"),
    ("max_body_bytes", int, 1_000_000, "largest request body (413 past it)"),
    ("request_timeout_s", float, 30.0, "seconds from a request's arrival to its answer (504 past it)"),
    ("body_timeout_s", float, 10.0, "most seconds between two parts of a request body (408 past it)"),
)


class CommandError(Exception):
    """A user error: printed as `error: <message>`, exit status 2."""


# ---------------------------------------------------------------------------------------------------- arguments


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m modeling_mtl",
        description="Use a trained multi-task model (a folder written by train_mtl.py, or a Hub repo id).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{predict,embed,evaluate,export-onnx,inspect-data,serve,demo,space}")

    def add_model_options(command):
        command.add_argument("--model", required=True, help="model folder (or Hub repo id)")
        command.add_argument("--batch_size", type=int, default=32, help="texts per forward pass (default 32)")
        command.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
        command.add_argument("--bf16", action="store_true",
                             help="run the model under bf16 autocast (faster on CPUs with bf16 support and on GPUs; "
                             "outputs change slightly, see README)")
        command.add_argument("--compile", action="store_true",
                             help="torch.compile the encoder first (pays only on long inputs: compiling takes a while)")
        command.add_argument("--onnx", choices=ONNX_CHOICES, default=None,
                             help="--model is a folder written by export-onnx: run its float32 or int8 graph with "
                             "onnxruntime on the CPU")

    def add_address_options(command, default_port):
        """--host and --port of a command that listens (serve, demo); checked by `check_listening_options`."""
        command.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        command.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")

    def add_decoding_option(command):
        command.add_argument("--token_decoding", choices=TOKEN_DECODINGS, default=None,
                             help="how word tags are read from the token head (default: the model's "
                             "token_decoding): argmax per word, or bio_viterbi, the best valid BIO sequence")

    predict = commands.add_parser(
        "predict", help="sentence label and entities, one JSON line per text",
        description="Print {text, label, score, entities} as one JSON line per text.",
    )
    add_model_options(predict)
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts; none: read lines from standard input")
    predict.add_argument("--aggregation_strategy", choices=AGGREGATION_STRATEGIES, default="first",
                         help="how a word's tag comes from its sub-tokens (default first)")
    predict.add_argument("--return_embedding", action="store_true", help="add the sentence embedding")
    predict.add_argument("--top_k", type=int, default=None,
                         help="add intent_ranking: the N best sentence labels with their scores")
    predict.add_argument("--output-format", "--output_format", dest="output_format", default="jsonl",
                         choices=("jsonl", "label-studio", "doccano", "rasa"),
                         help="jsonl (default): one JSON line per text, streamed; label-studio: tasks with "
                         "pre-annotations (predictions with model_version and scores) to import and correct; "
                         "doccano / rasa: the predicted labels as that tool's data (read back as training data)")
    predict.add_argument("--input", default=None,
                         help="bulk mode: read the texts from this file (.jsonl, .txt, .csv, .parquet) or datasets "
                         "folder as a stream, sharded across the processes of `accelerate launch`; needs --output")
    predict.add_argument("--dataset", default=None, help="bulk mode: stream this Hub data set instead of --input")
    predict.add_argument("--split", default=None, help="bulk mode: the split of --dataset or of a datasets folder")
    predict.add_argument("--text_field", default="text", help="bulk mode: the field or column of the text (default text)")
    predict.add_argument("--shard_size", type=int, default=1024,
                         help="bulk mode: texts per shard, the unit of work, of atomic writes and of resuming")
    predict.add_argument("--output", default=None,
                         help="bulk mode: the JSON Lines file to write (every input once, in input order)")
    predict.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                         help="bulk mode: show a progress bar with texts/s on standard error (default: yes)")
    predict.add_argument("--model_version", default=None,
                         help="Label Studio pre-annotations' model_version (default: the --model argument)")
    add_decoding_option(predict)

    embed = commands.add_parser(
        "embed", help="sentence embeddings, one JSON array per text",
        description="Print each text's sentence embedding as one JSON array per line.",
    )
    add_model_options(embed)
    embed.add_argument("texts", nargs="*", metavar="TEXT", help="texts; none: read lines from standard input")
    embed.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                       help="L2-normalise (default: the model's setting)")

    evaluate = commands.add_parser(
        "evaluate", help="metrics on a labelled data set",
        description="Score the model on a split of any data source train_mtl.py accepts and print the metrics.",
    )
    add_model_options(evaluate)
    add_decoding_option(evaluate)
    evaluate.add_argument("--config", help="a run file (.yaml/.json): its data keys (data_dir, sources, ...) are used")
    evaluate.add_argument("--data_dir", help="local folder: jointbert, conll, sst2, csv or jsonl")
    evaluate.add_argument("--data_format", help="format of --data_dir (default: detected)")
    evaluate.add_argument("--dataset_name", help="Hub data set id")
    evaluate.add_argument("--dataset_config_name", help="Hub data set configuration")
    evaluate.add_argument("--text_column")
    evaluate.add_argument("--tokens_column")
    evaluate.add_argument("--sentence_label_column")
    evaluate.add_argument("--tags_column")
    evaluate.add_argument("--split", choices=SPLIT_CHOICES, default=None,
                          help="split to score (default: test if there is one, else validation)")
    evaluate.add_argument("--max_samples", type=int, default=None, help="score the first N examples only")
    evaluate.add_argument("--per_entity", action=argparse.BooleanOptionalAction, default=True,
                          help="also report P/R/F1 per entity type (default: yes)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    evaluate.add_argument("--output", help="also write the metrics as JSON to this file")

    export = commands.add_parser(
        "export-onnx", help="ONNX graphs for serving (float32 and int8)",
        description="Write model.onnx (checked against the PyTorch model) and, unless --no-quantize, its dynamic "
        "int8 quantisation model_int8.onnx, with the config and tokenizer, into --output.",
    )
    export.add_argument("--model", required=True, help="model folder (or Hub repo id)")
    export.add_argument("--output", required=True, help="folder to write (created; files of the same name replaced)")
    export.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=True,
                        help="also write model_int8.onnx (default: yes)")

    serve = commands.add_parser(
        "serve", help="an HTTP server with dynamic batching (needs the serve extra)",
        description="Serve /predict, /embed, /model/parse (Rasa), /health, /ready, /info (and /metrics) with "
        "FastAPI and uvicorn; concurrent requests share forward passes. SIGTERM: finish accepted requests, exit 0.",
    )
    add_model_options(serve)
    add_decoding_option(serve)
    add_address_options(serve, 8000)
    for name, kind, default, text in SERVE_OPTIONS:
        serve.add_argument(f"--{name}", type=kind, default=default, help=f"{text} (default {default})")
    serve.add_argument("--metrics", action="store_true", help="serve Prometheus metrics at /metrics")

    demo = commands.add_parser(
        "demo", help="a Gradio demo in the browser (needs the demo extra)",
        description="A Gradio app: type a text, see its label with the top scores and its entities highlighted; "
        "a second tab reads several lines and offers the JSON Lines.",
    )
    add_model_options(demo)
    add_decoding_option(demo)
    add_address_options(demo, 7860)
    demo.add_argument("--share", action=argparse.BooleanOptionalAction, default=False,
                      help="ask Gradio for a public share link (default: no)")
    demo.add_argument("--example", action="append", default=None, dest="examples", metavar="TEXT",
                      help="an example text (repeatable; default: texts of the model's test_predictions.jsonl)")

    space = commands.add_parser(
        "space", help="write (and push) a Hugging Face Space folder for the model",
        description="Write app.py, requirements.txt, space_config.json and a README with Space metadata; the app "
        "loads the model with AutoModel and trust_remote_code (no dependency on this package).",
    )
    space.add_argument("--model", required=True, help="the trained model folder")
    space.add_argument("--output", required=True, help="the Space folder to write")
    space.add_argument("--repo_id", default=None,
                       help="the model's Hub repo, which the Space loads (default: copy the model into the Space)")
    space.add_argument("--title", default=None)
    space.add_argument("--push", metavar="SPACE_ID", default=None, help="upload the folder as this Space")
    space.add_argument("--private", action="store_true", help="with --push: a private Space")

    inspect = commands.add_parser(
        "inspect-data", help="what a run would train on, before training",
        description="Load a run file's data (or a data folder) as training would and print the formats, split "
        "sizes, label and entity-type counts, span conversion counts, labels only in validation/test, truncated "
        "texts and texts in several splits. Exit status 2 where training would refuse the data.",
    )
    inspect.add_argument("target", metavar="RUN_FILE_OR_FOLDER", help="a run file (.yaml/.json) or a data folder")
    inspect.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return parser


def run_inspect_data(args, stdout):
    from .inspect_data import inspect_data

    try:
        summary, text = inspect_data(args.target)
    except (ValueError, FileNotFoundError) as error:  # what training refuses, with its file and line
        raise CommandError(str(error)) from None
    stdout.write((json.dumps(summary, ensure_ascii=False) if args.json else text) + "\n")


def check_model_argument(model):
    """Refuse a model argument that cannot be a model before anything heavy is imported."""
    if os.path.isdir(model):
        config = os.path.join(model, "config.json")
        if not os.path.isfile(config):
            raise CommandError(f"{model} is not a model folder: it has no config.json")
        try:
            with open(config, encoding="utf-8") as handle:
                model_type = json.load(handle).get("model_type")
        except (OSError, ValueError) as error:
            raise CommandError(f"{config} cannot be read: {error}") from None
        if model_type != MODEL_TYPE:
            raise CommandError(f"{model} holds a {model_type!r} model, not a multi-task model ({MODEL_TYPE!r})")
        return
    if os.path.exists(model):
        raise CommandError(f"{model} is a file, not a model folder")
    if not HUB_ID.match(model):
        raise CommandError(f"model folder {model} not found")


def read_texts(texts, stdin):
    """The texts of the command line, or lines of standard input (streamed, blank lines skipped)."""
    if texts:
        yield from texts
        return
    if stdin is None or stdin.isatty():
        raise CommandError("no text given: pass TEXT arguments or pipe one text per line on standard input")
    for line in stdin:
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------------------------------- commands


def load_model(name, device=None, compile_encoder=False, onnx=None, token_decoding=None):
    model = _load_model(name, device, compile_encoder, onnx)
    if token_decoding is not None:
        model.config.token_decoding = token_decoding
    return model


def _load_model(name, device, compile_encoder, onnx):
    from transformers.utils import logging as transformers_logging

    from . import MultiTaskModel

    transformers_logging.disable_progress_bar()
    if onnx is not None:
        return load_onnx_model(name, onnx)
    try:
        model = MultiTaskModel.from_pretrained(name)
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if not os.path.exists(name):
            raise CommandError(f"model folder {name} not found, nor loadable as a Hub repo id ({reason})") from None
        raise CommandError(f"cannot load the model {name}: {reason}") from None
    if model.tokenizer is None:
        raise CommandError(f"{name} has no tokenizer files: it cannot read text")
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model.to(device)
    except (RuntimeError, ValueError) as error:
        raise CommandError(f"device {device!r} cannot be used: {error}") from None
    if compile_encoder:
        model.encoder.compile(dynamic=True)  # in place; batches differ in length, hence dynamic shapes
    return model.eval()


def load_onnx_model(name, kind):
    from .onnx_export import OnnxMultiTaskModel

    if not os.path.isdir(name):
        raise CommandError(f"--onnx needs a local folder written by export-onnx; {name} is not one")
    try:
        return OnnxMultiTaskModel.from_folder(name, quantized=kind == "int8")
    except (OSError, ImportError) as error:
        raise CommandError(str(error).splitlines()[0]) from None


def check_onnx_options(args):
    if getattr(args, "onnx", None) is None:
        return
    clashing = [flag for flag, on in (("--bf16", args.bf16), ("--compile", args.compile), ("--device", args.device))
                if on]
    if clashing:
        raise CommandError(f"--onnx runs onnxruntime on the CPU: {', '.join(clashing)} do not apply to it")
    if getattr(args, "normalize", None) is False and os.path.isdir(args.model):
        with open(os.path.join(args.model, "config.json"), encoding="utf-8") as handle:
            if json.load(handle).get("normalize_embeddings"):
                raise CommandError("--no-normalize: this ONNX export returns the model's L2-normalised embeddings only")


def precision(model, bf16):
    """bf16 autocast on the model's device for `--bf16`, else nothing (fp32)."""
    import contextlib

    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=torch.bfloat16)


def stream(args, stdin, stdout, lines_of):
    """Read the texts (arguments or stdin), load the model once there is a text, and print `lines_of(model, chunk)`
    for chunks of at least 256 texts (streaming, in input order); returns how many texts were read."""
    texts = read_texts(args.texts, stdin)
    first = next(texts, None)  # fail on an empty input before loading the model
    if first is None:
        raise CommandError("no text given: standard input held no line")
    model = load_model(args.model, args.device, args.compile, args.onnx, getattr(args, "token_decoding", None))
    count = 0
    for chunk in _chunks(_prepend(first, texts), max(args.batch_size, 256)):
        with precision(model, args.bf16):
            lines = lines_of(model, chunk)
        stdout.writelines(line + "\n" for line in lines)
        stdout.flush()
        count += len(chunk)
    return count


def run_bulk_predict(args):
    """`predict --input/--dataset ... --output ...`: sharded across the launcher's processes (bulk_predict.py)."""
    from .bulk_predict import BulkInputError, bulk_predict

    if args.output is None:
        raise CommandError("--input / --dataset need --output (the JSON Lines file to write)")
    if args.texts:
        raise CommandError("give TEXT arguments or --input / --dataset, not both")
    if args.input is not None and args.dataset is not None:
        raise CommandError("give --input or --dataset, not both")
    if args.output_format != "jsonl":
        raise CommandError(f"--output-format {args.output_format} does not apply to bulk prediction (JSON Lines only)")
    check_positive("--shard_size", args.shard_size)
    options = {"batch_size": args.batch_size, "return_embeddings": args.return_embedding,
               "aggregation_strategy": args.aggregation_strategy, "top_k": args.top_k}

    def model_loader(device):
        return load_model(args.model, args.device or str(device), args.compile, args.onnx, args.token_decoding)

    try:
        return bulk_predict(model_loader, args.output, path=args.input, dataset=args.dataset, split=args.split,
                            field=args.text_field, shard_size=args.shard_size, predict_options=options,
                            progress=args.progress)
    except BulkInputError as error:
        raise CommandError(str(error)) from None


def run_predict(args, stdin, stdout):
    if args.input is not None or args.dataset is not None or args.output is not None:
        return run_bulk_predict(args)
    if args.output_format != "jsonl":
        return run_pre_annotations(args, stdin, stdout)

    def lines_of(model, chunk):
        results = model.predict(
            chunk, batch_size=args.batch_size, return_embeddings=args.return_embedding,
            aggregation_strategy=args.aggregation_strategy, top_k=args.top_k,
        )
        return [json.dumps({"text": text, **result}, ensure_ascii=False) for text, result in zip(chunk, results)]

    return stream(args, stdin, stdout, lines_of)


def run_pre_annotations(args, stdin, stdout):
    """`predict --output-format label-studio|doccano|rasa`: every text's result, written as one file of the tool's
    format (a Label Studio export is one JSON list, so this does not stream)."""
    from .formats.export import write_pre_annotations

    if args.aggregation_strategy == "none" or args.return_embedding:
        flag = "--aggregation_strategy none" if args.aggregation_strategy == "none" else "--return_embedding"
        raise CommandError(f"--output-format {args.output_format} writes entities as spans: {flag} does not apply")
    texts, predictions = [], []

    def lines_of(model, chunk):
        texts.extend(chunk)
        predictions.extend(model.predict(chunk, batch_size=args.batch_size,
                                         aggregation_strategy=args.aggregation_strategy))
        return []

    count = stream(args, stdin, stdout, lines_of)
    try:
        write_pre_annotations(texts, predictions, stdout, args.output_format, args.model_version or args.model)
    except ValueError as error:  # e.g. a text Rasa markup cannot hold ('[')
        raise CommandError(str(error)) from None
    return count


def run_embed(args, stdin, stdout):
    def lines_of(model, chunk):
        vectors = model.encode(chunk, batch_size=args.batch_size, normalize_embeddings=args.normalize)
        return [json.dumps(vector) for vector in vectors.tolist()]

    return stream(args, stdin, stdout, lines_of)


def _prepend(first, rest):
    yield first
    yield from rest


def data_arguments(args):
    """DataArguments from `--config` (its data keys) and the data flags (which replace the file's source)."""
    from .training_args import DataArguments, parse_arguments

    data_args = DataArguments()
    if args.config:
        if not os.path.isfile(args.config):
            raise CommandError(f"run file {args.config} not found")
        try:
            _, data_args, _ = parse_arguments([args.config])
        except ValueError as error:
            raise CommandError(str(error)) from None
    flags = {key: getattr(args, key) for key in DATA_KEYS if getattr(args, key) is not None}
    if flags:
        if "data_dir" not in flags and "dataset_name" not in flags:
            raise CommandError("give --data_dir or --dataset_name with the column and format options")
        for key in DATA_KEYS:
            setattr(data_args, key, flags.get(key))
        data_args.sources = None
    if not (data_args.sources or data_args.data_dir or data_args.dataset_name):
        raise CommandError("no data given: use --data_dir, --dataset_name or --config")
    if data_args.data_dir and not os.path.isdir(data_args.data_dir):
        raise CommandError(f"data folder {data_args.data_dir} not found")
    try:
        return data_args, data_args.data_sources()
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None


def load_split(sources, split):
    """The requested split (default: test, else validation) of every source, concatenated; needs no train split."""
    import datasets

    from .data import load_source

    loaded = []
    for source in sources:
        try:
            loaded.append(load_source(source))
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {source.data_dir or source.dataset_name}: {error}") from None
    available = sorted({name for dataset_dict in loaded for name in dataset_dict})
    if split is None:
        split = next((name for name in ("test", "validation") if name in available), None)
        if split is None:
            raise CommandError(f"the data has no test or validation split (it has: {', '.join(available)}); use --split")
    parts = [dataset_dict[split] for dataset_dict in loaded if split in dataset_dict]
    if not parts:
        raise CommandError(f"the data has no {split} split (it has: {', '.join(available)})")
    return split, datasets.concatenate_datasets(parts)


# What Trainer.predict adds to the metrics that `evaluate` does not report (timings, the weighted loss).
TRAINER_ONLY_METRICS = {"loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time"}


def score(model, encoded, batch_size, compute_metrics, prefix):
    """The metrics of both heads over `encoded` and each task's mean loss, from `MultiTaskTrainer.predict`: the
    evaluation loop training runs (the same collator, `token_decoding`, metric and loss totals), keys prefixed."""
    import tempfile

    from transformers import TrainingArguments

    from .data import MultiTaskCollator
    from .onnx_export import OnnxMultiTaskModel
    from .trainer import MultiTaskTrainer

    onnx = isinstance(model, OnnxMultiTaskModel)
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids", *(task.label_key for task in TASKS))
               if c in encoded.column_names]
    with tempfile.TemporaryDirectory(prefix="modeling_mtl-evaluate-") as scratch:  # Trainer wants an output_dir
        arguments = TrainingArguments(
            output_dir=scratch,
            per_device_eval_batch_size=batch_size,
            label_names=[task.label_key for task in TASKS],
            use_cpu=onnx or model.device.type == "cpu",
            remove_unused_columns=False,
            report_to="none",
            disable_tqdm=True,
        )
        trainer = MultiTaskTrainer(
            model=model.as_module() if onnx else model,
            args=arguments,
            data_collator=MultiTaskCollator(model.tokenizer),
            compute_metrics=compute_metrics,
        )
        return trainer.predict(encoded.select_columns(columns), metric_key_prefix=prefix).metrics


def run_evaluate(args, stdout):
    check_positive("--max_samples", args.max_samples)
    data_args, sources = data_arguments(args)
    model = load_model(args.model, args.device, args.compile, args.onnx, args.token_decoding)
    split, dataset = load_split(sources, args.split)
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    if len(dataset) == 0:
        raise CommandError(f"the {split} split is empty")

    from datasets import DatasetDict
    from .data import encode_dataset_dict
    from .metrics import build_compute_metrics

    config = model.config
    encoded, stats = encode_dataset_dict(
        DatasetDict({split: dataset}), model.tokenizer, config.sentence_labels, config.token_labels,
        max_length=config.max_seq_length, label_all_tokens=data_args.label_all_tokens,
    )
    compute = build_compute_metrics(encoded[split], config.sentence_labels, config.token_labels, args.per_entity)
    with precision(model, args.bf16):
        scored = score(model, encoded[split], args.batch_size, compute, prefix=split)
    # The metric module's figures and each task's loss; not the Trainer's timings or its combined loss.
    metrics = {key[len(split) + 1 :]: value for key, value in scored.items()}
    metrics = {key: value for key, value in metrics.items() if key not in TRAINER_ONLY_METRICS}
    unseen = stats[split]["unseen"]
    metrics.update(
        samples=len(dataset),
        examples_with_unseen_sentence_label=unseen["examples_with_unseen_sentence_label"],
        words_with_unseen_tag=unseen["words_with_unseen_tag"],
        truncated_examples=stats[split]["truncated_examples"],
    )
    metrics = {key: (value.item() if hasattr(value, "item") else value) for key, value in metrics.items()}
    report = {"model": args.model, "split": split, "data": [s.data_dir or s.dataset_name for s in sources],
              "token_decoding": config.token_decoding, "metrics": metrics, **({"onnx": args.onnx} if args.onnx else {})}
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    if args.json:
        stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        stdout.write(metric_table(report) + "\n")
    return metrics


def metric_table(report):
    metrics = report["metrics"]
    lines = [f"{report['model']} on the {report['split']} split of {', '.join(report['data'])} "
             f"({metrics['samples']} examples)", ""]
    width = max(len(key) for key in metrics)
    lines.append(f"{'metric'.ljust(width)}  value")
    lines.append(f"{'-' * width}  ------")
    for key in sorted(metrics):
        value = metrics[key]
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key.ljust(width)}  {text}")
    return "\n".join(lines)


def run_export(args, stdout):
    from .onnx_export import export_onnx

    model = load_model(args.model)
    try:
        folder = export_onnx(model, args.output, quantize=args.quantize)
    except ImportError as error:
        raise CommandError(str(error)) from None
    for path in sorted(folder.glob("*.onnx")):
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)", file=stdout)


def check_listening_options(args):
    """What serve and demo refuse before loading the model."""
    if args.bf16:
        raise CommandError(f"--bf16 does not apply to {args.command} (the model runs in fp32 in a worker thread)")
    if not 0 <= args.port < 65536:
        raise CommandError(f"--port must be between 0 and 65535, got {args.port}")


def run_serve(args):
    try:
        from .serving import ServeOptions, create_app, serve
    except ImportError as error:
        raise CommandError(f"serve needs the serve extra ({error}): pip install 'modeling-mtl[serve]'") from None
    try:
        options = ServeOptions(max_batch_size=args.batch_size, metrics=args.metrics,
                               **{name: getattr(args, name) for name, *_ in SERVE_OPTIONS}).check()
    except ValueError as error:
        raise CommandError(str(error).replace("max_batch_size", "--batch_size")) from None
    check_listening_options(args)
    model = load_model(args.model, args.device, args.compile, args.onnx, args.token_decoding)
    return serve(create_app(model, options, model_name=args.model, onnx=args.onnx), args.host, args.port)


def run_demo(args):
    try:
        from .demo import build_demo
    except ImportError as error:
        raise CommandError(f"demo needs the demo extra ({error}): pip install 'modeling-mtl[demo]'") from None
    from .space import model_examples

    check_listening_options(args)
    model = load_model(args.model, args.device, args.compile, args.onnx, args.token_decoding)
    examples = args.examples if args.examples is not None else model_examples(args.model)
    demo = build_demo(model, examples=examples, title=f"{os.path.basename(os.path.normpath(args.model))}")
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=False)
    return 0


def run_space(args, stdout):
    from .space import push_space, write_space

    try:
        folder = write_space(args.model, args.output, repo_id=args.repo_id, title=args.title)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(f"Space folder written to {folder}", file=stdout)
    if args.push:
        print(f"pushed to {push_space(folder, args.push, private=args.private)}", file=stdout)
    return 0


def check_positive(name, value):
    if value is not None and value < 1:
        raise CommandError(f"{name} must be at least 1, got {value}")


# ---------------------------------------------------------------------------------------------------- entry point


def main(argv=None, stdin=None, stdout=None):
    """Run the command line; returns the exit status (0, or 2 for a user error)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect-data":
            run_inspect_data(args, stdout)
            return 0
        check_positive("--batch_size", getattr(args, "batch_size", None))
        check_positive("--top_k", getattr(args, "top_k", None))
        check_model_argument(args.model)
        check_onnx_options(args)
        if args.command == "export-onnx":
            run_export(args, stdout)
        elif args.command == "predict":
            run_predict(args, stdin, stdout)
        elif args.command == "embed":
            run_embed(args, stdin, stdout)
        elif args.command == "serve":
            return run_serve(args)
        elif args.command == "demo":
            return run_demo(args)
        elif args.command == "space":
            return run_space(args, stdout)
        else:
            run_evaluate(args, stdout)
    except CommandError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `... | head`: the reader left
        sys.stderr.close()
        return 0
    return 0


__all__ = ["build_parser", "main"]
