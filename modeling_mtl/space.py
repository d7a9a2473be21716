"""A Hugging Face Space from a trained model: `python -m modeling_mtl space --model DIR --output DIR [--push]`.

The folder holds `app.py` (a copy of demo.py: gradio + the standard library, the model loaded with `AutoModel` and
`trust_remote_code`, so the Space does not need this package), `space_config.json` (which model, the examples, the
title), `requirements.txt` and a `README.md` whose YAML header is the Space's metadata (`sdk: gradio`,
`sdk_version`, `app_file`, `models:` naming the model repo). With `--repo_id` the app loads the model from the Hub;
without it the model folder is copied into the Space as `model/`. `--push` uploads the folder as a Space with
`huggingface_hub`, in one commit.
"""

import json
import shutil
from importlib import metadata
from pathlib import Path

DEMO_SOURCE = Path(__file__).with_name("demo.py")
EXAMPLES = 4
SPACE_CONFIG = "space_config.json"  # the name app.py (demo.py) reads; not imported from it, which imports gradio


def model_examples(model_dir, count=EXAMPLES):
    """A few texts of the model's own evaluation data (`test_predictions.jsonl`, written by train_mtl.py), if any."""
    path = Path(model_dir) / "test_predictions.jsonl"
    if not path.is_file():
        return []
    examples = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line).get("text")
            if text and text not in examples:
                examples.append(text)
            if len(examples) == count:
                break
    return examples


def _version(package, fallback):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return fallback


def space_readme(title, model_repo, sdk_version):
    models = f"models:\n  - {model_repo}\n" if model_repo else ""
    return (
        "---\n"
        f"title: {json.dumps(title)}\n"
        "emoji: 🧭\n"
        "colorFrom: blue\n"
        "colorTo: green\n"
        "sdk: gradio\n"
        f"sdk_version: {sdk_version}\n"
        "app_file: app.py\n"
        "pinned: false\n"
        f"{models}"
        "---\n\n"
        f"# {title}\n\n"
        "Type a sentence: the model gives its sentence label (with the top scores) and highlights the entities in the "
        "text, from one encoder pass. A second tab reads several lines at once and offers the results as JSON Lines.\n\n"
        + (f"Model: [{model_repo}](https://huggingface.co/{model_repo}).\n" if model_repo else
           "The model is the `model/` folder of this Space.\n")
    )


def write_space(model_dir, output, repo_id=None, title=None, examples=None):
    """Write the Space folder for the model in `model_dir` (see the module docstring); returns its path."""
    model_dir, output = Path(model_dir), Path(output)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a model folder: it has no config.json")
    output.mkdir(parents=True, exist_ok=True)
    title = title or (f"{repo_id.split('/')[-1]} demo" if repo_id else f"{model_dir.name} demo")
    if repo_id is None:
        shutil.copytree(model_dir, output / "model", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoint-*", "runs", "*.jsonl"))
    shutil.copyfile(DEMO_SOURCE, output / "app.py")
    config = {"model": repo_id or "model", "title": title,
              "examples": examples if examples is not None else model_examples(model_dir)}
    (output / SPACE_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    gradio_version = _version("gradio", "5.0.0")
    (output / "requirements.txt").write_text(
        f"gradio=={gradio_version}\ntransformers>={_version('transformers', '5.0.0')}\ntorch\n", encoding="utf-8")
    (output / "README.md").write_text(space_readme(title, repo_id, gradio_version), encoding="utf-8")
    return output


def push_space(folder, space_id, token=None, private=False):
    """Upload the Space folder in one commit; returns the Space's URL."""
    from huggingface_hub import HfApi, constants

    api = HfApi(endpoint=constants.ENDPOINT)
    url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, token=token,
                          exist_ok=True)
    api.upload_folder(repo_id=url.repo_id, repo_type="space", folder_path=str(folder), token=token,
                      commit_message="Upload the demo Space")
    return f"{constants.ENDPOINT}/spaces/{url.repo_id}"


__all__ = ["model_examples", "push_space", "write_space"]
