"""Bulk prediction over a large input, sharded across processes: `predict --input FILE --output FILE`.

    python -m modeling_mtl predict --model outputs/atis --input big.jsonl --output out.jsonl
    accelerate launch -m modeling_mtl predict --model outputs/atis --input big.parquet --output out.jsonl
    accelerate launch --config_file configuration/accelerate_ddp_cpu.yaml -m modeling_mtl predict ...  # 2 CPU ranks

The input is read as a stream, never whole: JSON Lines (`.jsonl`: a string or an object with `--text_field` per
line), plain text (`.txt`: one text per line, blank lines included), CSV (`.csv`, a header with `--text_field`),
Parquet (`.parquet`, read in row batches), a folder written by `datasets`' `save_to_disk` (memory-mapped; `--split`
for a DatasetDict) or, with `--dataset NAME`, a Hub data set streamed with `datasets`. It is cut into shards of
`--shard_size` texts; shard k goes to process k mod N (one process without a launcher; `accelerate launch` gives N,
with their devices). Each finished shard is written atomically to `OUTPUT.parts/shard-<k>.jsonl`; when every process
is done, process 0 joins them in shard order into OUTPUT (atomically) and removes the parts. So every input appears
exactly once, in input order, as `{"index": i, "text": ..., **predict's result}`; and a run that is killed and
started again with the same arguments skips the shards it finished (the parts folder's `manifest.json` refuses a
rerun with other arguments rather than mixing two runs).
"""

import csv
import itertools
import json
import os
import sys
from pathlib import Path

PARTS_SUFFIX = ".parts"
MANIFEST = "manifest.json"
FILE_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt", ".csv": "csv", ".parquet": "parquet"}


class BulkInputError(ValueError):
    """The input cannot be read: the message names the file and line (or row)."""


# ---------------------------------------------------------------------------------------------------- reading


def _jsonl_texts(path, field):
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                raise BulkInputError(f"{path} line {number} is blank; a JSON Lines input holds one text per line")
            try:
                record = json.loads(line)
            except ValueError as error:
                raise BulkInputError(f"{path} line {number} is not JSON: {error}") from None
            yield _field(record, field, f"{path} line {number}")


def _txt_texts(path):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\r\n")


def _csv_texts(path, field):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or field not in reader.fieldnames:
            raise BulkInputError(f"{path} has no {field!r} column (columns: {reader.fieldnames}); use --text_field")
        for row in reader:
            yield _field(row, field, f"{path} line {reader.line_num}")


def _parquet_texts(path, field):
    import pyarrow.parquet as parquet

    table = parquet.ParquetFile(path)
    if field not in table.schema_arrow.names:
        raise BulkInputError(f"{path} has no {field!r} column (columns: {table.schema_arrow.names}); use --text_field")
    row = 0
    for batch in table.iter_batches(batch_size=4096, columns=[field]):
        for value in batch.column(0).to_pylist():
            yield _field({field: value}, field, f"{path} row {row}")
            row += 1


def _dataset_texts(dataset, field, where):
    if field not in (dataset.column_names or []):
        raise BulkInputError(f"{where} has no {field!r} column (columns: {dataset.column_names}); use --text_field")
    for row, record in enumerate(dataset.select_columns([field])):
        yield _field(record, field, f"{where} row {row}")


def _field(record, field, where):
    if isinstance(record, str) and field == "text":
        return record
    if not isinstance(record, dict) or field not in record:
        raise BulkInputError(f"{where}: expected a string or an object with a {field!r} field, got {record!r:.80}")
    value = record[field]
    if not isinstance(value, str):
        raise BulkInputError(f"{where}: {field!r} is {type(value).__name__} ({value!r:.80}), not a string")
    return value


def input_texts(path=None, dataset=None, split=None, field="text"):
    """The input's texts, in order, as a stream. Errors name the file and line (or row)."""
    if dataset is not None:
        import datasets

        streamed = datasets.load_dataset(dataset, split=split or "train", streaming=True)
        return _dataset_texts(streamed, field, f"{dataset} ({split or 'train'})")
    path = Path(path)
    if path.is_dir():
        import datasets

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise BulkInputError(f"{path} holds the splits {list(loaded)}; choose one with --split")
            loaded = loaded[split]
        return _dataset_texts(loaded, field, str(path))
    if not path.is_file():
        raise BulkInputError(f"input {path} not found")
    kind = FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise BulkInputError(f"{path}: unknown input type {path.suffix!r}; use one of {sorted(FILE_KINDS)} or a "
                             "datasets folder")
    if kind == "txt":
        return _txt_texts(path)
    return {"jsonl": _jsonl_texts, "csv": _csv_texts, "parquet": _parquet_texts}[kind](path, field)


def shards(texts, shard_size):
    """(shard number, first input index, texts) for consecutive shards of the stream."""
    iterator = iter(texts)
    for number in itertools.count():
        chunk = list(itertools.islice(iterator, shard_size))
        if not chunk:
            return
        yield number, number * shard_size, chunk


# ---------------------------------------------------------------------------------------------------- writing


def _atomic_write(path, lines):
    temporary = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _describe_input(path, dataset, split, field):
    if dataset is not None:
        return {"dataset": dataset, "split": split, "text_field": field}
    stat = Path(path).stat()
    return {"input": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "split": split,
            "text_field": field}


def _check_manifest(parts, manifest, is_main):
    """Write the manifest of a new run, or refuse parts left by a run with other arguments."""
    path = parts / MANIFEST
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != manifest:
            differing = sorted(key for key in set(found) | set(manifest) if found.get(key) != manifest.get(key))
            raise BulkInputError(f"{parts} holds the shards of another run (it differs in {differing}); delete it "
                                 "or rerun with the same arguments")
    elif is_main:
        parts.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, [json.dumps(manifest, sort_keys=True)])


def bulk_predict(model_loader, output, path=None, dataset=None, split=None, field="text", shard_size=1024,
                 predict_options=None, state=None, progress=True, stderr=None):
    """Predict every input text into `output` (JSON Lines); see the module docstring. `model_loader(device)` loads
    the model; `state` is an `accelerate.PartialState` (one is made). Returns the number of texts written (process
    0) or predicted (the others)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    import torch

    stderr = stderr or sys.stderr
    # cpu=True on a machine without GPUs: otherwise the ranks of a CPU launch each think they are alone.
    state = state or PartialState(cpu=not torch.cuda.is_available())
    rank, world = state.process_index, state.num_processes
    output = Path(output)
    parts = output.with_name(output.name + PARTS_SUFFIX)
    predict_options = dict(predict_options or {})
    texts = input_texts(path, dataset, split, field)  # a missing file or unknown type fails before the model loads
    manifest = {**_describe_input(path, dataset, split, field), "shard_size": shard_size,
                "predict_options": predict_options}
    if state.is_main_process:  # writes the manifest of a new run; the others check it once it is there
        _check_manifest(parts, manifest, True)
    state.wait_for_everyone()
    if not state.is_main_process:
        _check_manifest(parts, manifest, False)
    model = model_loader(state.device)

    total_shards = done_before = predicted = 0
    bar = tqdm(unit=" texts", desc=f"predict (process {rank} of {world})", disable=not progress, file=stderr,
               dynamic_ncols=True)
    for number, start, chunk in shards(texts, shard_size):
        total_shards = number + 1
        if number % world != rank:
            continue
        part = parts / f"shard-{number:08d}.jsonl"
        if part.is_file():
            done_before += 1
            continue
        results = model.predict(chunk, **predict_options)
        _atomic_write(part, [json.dumps({"index": start + offset, "text": text, **result}, ensure_ascii=False) + "\n"
                             for offset, (text, result) in enumerate(zip(chunk, results))])
        predicted += len(chunk)
        bar.update(len(chunk))
    bar.close()
    if done_before:
        print(f"process {rank}: {done_before} of its shards were already done (resumed)", file=stderr)
    state.wait_for_everyone()
    if not state.is_main_process:
        return predicted
    missing = [number for number in range(total_shards) if not (parts / f"shard-{number:08d}.jsonl").is_file()]
    if missing:
        raise BulkInputError(f"shards {missing[:5]} of {total_shards} are missing from {parts}")
    written = _join(parts, total_shards, output)
    for item in parts.iterdir():
        item.unlink()
    parts.rmdir()
    print(f"{written} texts predicted into {output} ({total_shards} shards, {world} processes)", file=stderr)
    return written


def _join(parts, total_shards, output):
    temporary = output.with_name(output.name + ".tmp")
    written = 0
    with open(temporary, "w", encoding="utf-8") as sink:
        for number in range(total_shards):
            with open(parts / f"shard-{number:08d}.jsonl", encoding="utf-8") as part:
                for line in part:
                    sink.write(line)
                    written += 1
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(temporary, output)
    return written


__all__ = ["BulkInputError", "bulk_predict", "input_texts", "shards"]
