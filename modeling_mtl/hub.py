"""Publishing a trained model folder on the Hugging Face Hub: one commit with the model, its code and its card.

    settings = take_push_settings(training_args)    # before the Trainer is built: Trainer then never pushes itself
    ...train, evaluate, write the card...
    push_folder(output_dir, settings)

`transformers.Trainer` with `push_to_hub=True` pushes at every save (checkpoints, `training_args.bin` included).
Here the run's Hub settings (`push_to_hub`, `hub_model_id`, `hub_private_repo`, `hub_token`, `hub_revision`) are
taken out of the training arguments, and at the end ONE `huggingface_hub` commit uploads the files of the model
folder that a user needs (`files_to_push`: `publishing_mtl.files_to_publish`, the rule `MultiTaskModel.push_to_hub`
follows too). The token is only handed to `huggingface_hub`: it is never logged,
and it is removed from the training arguments so that the saved `training_args.json` does not carry it either.

The endpoint is `huggingface_hub.constants.ENDPOINT` (`HF_ENDPOINT`), read when a push starts.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants

from .publishing_mtl import files_to_publish

logger = logging.getLogger(__name__)

@dataclass
class PushSettings:
    """Where and how a training run publishes its model. `token` is None for the logged-in token."""

    repo_id: str
    private: bool | None = None
    token: str | None = None
    revision: str | None = None
    created: bool = False  # set by `create_repo`, which also makes `repo_id` the full id

    def __repr__(self):  # never show the token
        return f"PushSettings(repo_id={self.repo_id!r}, private={self.private!r}, revision={self.revision!r})"


def take_push_settings(training_args):
    """The run's Hub settings, or None when it does not push; switches the Trainer's own pushing off.

    Call it before building the Trainer: it sets `push_to_hub=False` and `hub_token=None` on `training_args`.
    The repository name defaults to the output folder's name, as Trainer names it.
    """
    token = getattr(training_args, "hub_token", None)
    training_args.hub_token = None
    if not getattr(training_args, "push_to_hub", False):
        return None
    training_args.push_to_hub = False
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).absolute().name
    return PushSettings(
        repo_id=repo_id,
        private=training_args.hub_private_repo,
        token=token,
        revision=getattr(training_args, "hub_revision", None),
    )


# The one file-selection rule, shared with `MultiTaskModel.push_to_hub` (publishing_mtl.py travels with the model).
files_to_push = files_to_publish


def create_repo(settings):
    """Create the repository if needed (once); returns its full id (`namespace/name`), also stored in `settings`."""
    if not settings.created:
        api = HfApi(endpoint=constants.ENDPOINT)
        url = api.create_repo(settings.repo_id, private=settings.private, token=settings.token, exist_ok=True)
        settings.repo_id, settings.created = url.repo_id, True
    return settings.repo_id


def push_folder(folder, settings, commit_message="Upload multi-task model", commit_description=None):
    """Upload `files_to_push(folder)` to `settings.repo_id` in one commit; returns the `CommitInfo`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no model (no config.json): nothing to push")
    api = HfApi(endpoint=constants.ENDPOINT)
    repo_id = create_repo(settings)
    if settings.revision and settings.revision != constants.DEFAULT_REVISION:
        api.create_branch(repo_id, branch=settings.revision, token=settings.token, exist_ok=True)
    names = files_to_push(folder)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in names]
    logger.info(f"pushing {len(names)} files of {folder} to {repo_id} in one commit")
    info = api.create_commit(
        repo_id=repo_id,
        operations=operations,
        commit_message=commit_message,
        commit_description=commit_description,
        token=settings.token,
        revision=settings.revision,
    )
    logger.info(f"pushed to {info.commit_url}")
    return info


__all__ = ["PushSettings", "create_repo", "files_to_push", "push_folder", "take_push_settings"]
