"""The `multitask` pipeline: sentence label, entities and (optionally) the embedding of each text.

This file is copied into every saved model folder (the config's `custom_pipelines` points at it), so
`pipeline(model=folder_or_repo, trust_remote_code=True)` works without the modeling_mtl package.
"""

from transformers import Pipeline


class MultiTaskPipeline(Pipeline):
    """`pipeline(model=folder, trust_remote_code=True)(texts)` -> `[{"label", "score", "entities": [...]}]`."""

    def _sanitize_parameters(self, return_embedding=None, **kwargs):
        postprocess = {}
        if return_embedding is not None:
            postprocess["return_embedding"] = return_embedding
        return {}, {}, postprocess

    def preprocess(self, text):
        return {"text": text}

    def _forward(self, model_inputs):
        return {"text": model_inputs["text"]}

    def postprocess(self, model_outputs, return_embedding=False):
        return self.model.predict([model_outputs["text"]], return_embeddings=return_embedding)[0]
