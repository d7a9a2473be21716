"""Writing a model folder and publishing it: the atomic move into place, the sentence-transformers files, the
tokenizer settings, which files of a folder go to the Hub, and the Hub metadata of the model card.

This file is copied into every saved model folder (the model code imports it), so it imports only the standard
library and its sibling `schema_mtl.py`, and makes no network call. Both ways to publish use it:
`MultiTaskModel.push_to_hub` (works in a clean client) and the training run's push (`modeling_mtl.hub.push_folder`);
the full model card of a training run is rendered by `modeling_mtl.model_card` with the metadata defined here.
"""

import fnmatch
import json
import os
import re
import shutil

from .schema_mtl import HUB_ID

# The Hub metadata of every card: what loads the model, which widget the Hub shows, and the tags.
LIBRARY_NAME = "transformers"
PIPELINE_TAG = "text-classification"
CARD_TAGS = (
    "custom_code",
    "multi-task",
    "sentence-transformers",
    "text-classification",
    "token-classification",
    "ner",
    "feature-extraction",
)

# ema_decay: the weights being trained, kept in checkpoints next to their average (never published).
TRAINING_WEIGHTS_NAME = "training_weights.safetensors"

# Never published: training state, pickles and run by-products. Folders: checkpoints, logs, caches.
EXCLUDED_FILES = (
    "training_args.bin",
    "training_args.json",
    TRAINING_WEIGHTS_NAME,
    "trainer_state.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "*.jsonl",
    "*.pt",
    "*.pth",
    "*.bin",
    "*.pkl",
    "*.ckpt",
    "*.log",
    ".*",
)
EXCLUDED_FOLDERS = ("checkpoint-*", "runs", "wandb", "logs", "__pycache__", ".*")

# Relative links of a model card: markdown links and images, and HTML src/href attributes.
CARD_LINK = re.compile(r"""(?:\]\(|(?:src|href)=["'])([^)"'\s#?]+)""")

SENTENCE_TRANSFORMERS_POOLING = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "last": "pooling_mode_lasttoken",
}


# ---------------------------------------------------------------------------------------------------- writing


def move_into_place(staging, target):
    """Move a fully written folder to `target`. A new target is one atomic rename; an existing one loses its
    config.json first and gets it back last, so a crash in between leaves a folder that refuses to load."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    config_path = os.path.join(target, "config.json")
    if os.path.exists(config_path):
        os.remove(config_path)
    names = sorted(os.listdir(staging), key=lambda name: name == "config.json")
    for name in names:
        source, destination = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(destination) and not os.path.islink(destination):
            shutil.rmtree(destination)
        os.replace(source, destination)


def finish_tokenizer_config(tokenizer_config_path, max_seq_length):
    """Drop what transformers records about how the tokenizer was loaded (`is_local`, `local_files_only`: a published
    folder should not carry that), and set `model_max_length` to the model's `max_seq_length`, where the standard
    pipelines then truncate (`truncation=True`) as `predict` and `encode` do."""
    if not os.path.exists(tokenizer_config_path):
        return
    with open(tokenizer_config_path, encoding="utf-8") as handle:
        settings = json.load(handle)
    for key in ("is_local", "local_files_only", "name_or_path"):
        settings.pop(key, None)
    settings["model_max_length"] = max_seq_length
    with open(tokenizer_config_path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def sentence_transformers_settings(read_json):
    """Pooling mode, normalisation and max length of a sentence-transformers folder ({} for a plain encoder);
    `read_json(filename)` returns a file of the folder parsed, or None when it has no such file."""
    modules = read_json("modules.json")
    if not modules:
        return {}
    settings = {"normalize_embeddings": any(m["type"].endswith(".Normalize") for m in modules)}
    for module in modules:
        if module["type"].endswith(".Pooling"):
            pooling = read_json(f"{module['path']}/config.json") or {}
            for mode, key in SENTENCE_TRANSFORMERS_POOLING.items():
                if pooling.get(key):
                    settings["pooling_mode"] = mode
                    break
    bert_config = read_json("sentence_bert_config.json") or {}
    if bert_config.get("max_seq_length"):
        settings["max_seq_length"] = int(bert_config["max_seq_length"])
    return settings


def write_sentence_transformers_files(config, folder):
    """modules.json and the pooling config, so `SentenceTransformer(folder, trust_remote_code=True)` loads the same
    embeddings from the same weights (its Transformer module reads this model's `last_hidden_state`)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if config.normalize_embeddings:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": config.hidden_size}
    pooling.update({key: mode == config.pooling_mode for mode, key in SENTENCE_TRANSFORMERS_POOLING.items()})
    pooling["pooling_mode_mean_sqrt_len_tokens"] = False
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": config.max_seq_length, "do_lower_case": False},
        "1_Pooling/config.json": pooling,
    }
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")


# ---------------------------------------------------------------------------------------------------- publishing


def _excluded(name, patterns):
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def files_to_publish(folder):
    """The files of a model folder that go to the Hub, as sorted POSIX paths relative to `folder`: the model
    (weights, config, tokenizer, code files), the sentence-transformers files, the card and its plots,
    `all_results.json`; not checkpoints, the training arguments, the trainer state or predictions."""
    folder = os.fspath(folder)
    chosen = []
    for root, folders, files in os.walk(folder):
        relative_root = os.path.relpath(root, folder)
        folders[:] = sorted(name for name in folders if not _excluded(name, EXCLUDED_FOLDERS))
        for name in sorted(files):
            if not _excluded(name, EXCLUDED_FILES):
                path = name if relative_root == "." else os.path.join(relative_root, name)
                chosen.append(path.replace(os.sep, "/"))
    return sorted(chosen)


def hub_base_model(name):
    """`name` when it reads as a Hub model id (the card's `base_model`), None for a local folder."""
    if not name or os.path.isabs(name) or os.path.exists(name) or name.startswith(".") or not HUB_ID.match(name):
        return None
    return name


def card_tags(extra=None):
    """The card's tags: `CARD_TAGS`, then those of `extra` not already among them."""
    return [*CARD_TAGS, *(tag for tag in extra or [] if tag not in CARD_TAGS)]


def copy_model_card(source, folder):
    """Copy `source/README.md` into `folder` with the files it links to (one folder level deep at most, never out of
    `source`, never over a model file) and `all_results.json`. Returns whether there was a card."""
    if not source or not os.path.isfile(os.path.join(source, "README.md")):
        return False
    shutil.copyfile(os.path.join(source, "README.md"), os.path.join(folder, "README.md"))
    with open(os.path.join(source, "README.md"), encoding="utf-8") as handle:
        names = {match.group(1) for match in CARD_LINK.finditer(handle.read())}
    for name in sorted(names | {"all_results.json"}):
        relative = os.path.normpath(name)
        if "://" in name or os.path.isabs(relative) or relative.startswith("..") or relative.count(os.sep) > 1:
            continue
        path, destination = os.path.join(source, relative), os.path.join(folder, relative)
        if os.path.isfile(path) and not os.path.exists(destination):
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copyfile(path, destination)
    return True


def write_minimal_model_card(config, folder, repo_id, tags=None):
    """A README.md with the Hub metadata and a usage snippet, for a model pushed without a card of its own (a
    training run writes the full card with `modeling_mtl.model_card`, from the same metadata)."""
    lines = ["---", f"library_name: {LIBRARY_NAME}", f"pipeline_tag: {PIPELINE_TAG}", "tags:"]
    lines += [f"- {json.dumps(tag)}" for tag in card_tags(tags)]
    base_model = hub_base_model(config.encoder_name_or_path)
    if base_model:
        lines.append(f"base_model: {json.dumps(base_model)}")
    lines += [
        "---",
        "",
        "# Multi-task sentence transformer",
        "",
        "One shared encoder gives a sentence embedding, a sentence label "
        f"({', '.join(config.sentence_labels)}) and BIO entities "
        f"({', '.join(sorted({tag[2:] for tag in config.token_labels if tag != 'O'})) or 'none'}) in one pass.",
        "",
        "```python",
        "from transformers import AutoModel, pipeline",
        "",
        f"model = AutoModel.from_pretrained({json.dumps(repo_id)}, trust_remote_code=True)",
        'model.predict(["A sentence to label."])',
        'model.encode(["A sentence to embed."])',
        f"pipe = pipeline(model={json.dumps(repo_id)}, trust_remote_code=True)",
        "```",
        "",
    ]
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


def remove_unpublished(folder):
    """Delete the files of `folder` that `files_to_publish` leaves out (for a folder written only to be pushed)."""
    keep = set(files_to_publish(folder))
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            if os.path.relpath(path, folder).replace(os.sep, "/") not in keep:
                os.remove(path)
