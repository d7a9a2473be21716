"""The custom handler of Hugging Face Inference Endpoints for a multi-task model folder.

Every saved folder carries this file as `handler.py` (the name Inference Endpoints looks for at the root of a model
repo), so a pushed model deploys as an endpoint without extra code. Like the other code files of a folder it imports
only `torch`, `transformers` and the standard library, and makes no network call.

    handler = EndpointHandler("outputs/atis")
    handler({"inputs": "flights from boston to denver", "parameters": {"top_k": 3}})
    # {'label': 'atis_flight', 'score': ..., 'intent_ranking': [...], 'entities': [...]}
    handler({"inputs": ["a text", "another"], "parameters": {"aggregation_strategy": "average"}})   # a list back

`inputs` is a string (one result) or a list of strings (a list of results, in order); `parameters` may hold
`top_k`, `aggregation_strategy`, `return_embeddings` and `batch_size`, as `model.predict` takes them. The results
are exactly `predict`'s: the config's temperature, rejection and token decoding apply.
"""

from transformers import AutoModel

PARAMETERS = ("top_k", "aggregation_strategy", "return_embeddings", "batch_size")


class EndpointHandler:
    def __init__(self, path=""):
        self.model = AutoModel.from_pretrained(path or ".", trust_remote_code=True)
        self.model.eval()

    def __call__(self, data):
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected a JSON object {"inputs": <text or list of texts>, "parameters": {...}}')
        inputs, parameters = data["inputs"], data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f"parameters must be an object, got {type(parameters).__name__}")
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; this endpoint takes {list(PARAMETERS)}")
        if isinstance(inputs, str):
            return self.model.predict([inputs], **parameters)[0]
        if not isinstance(inputs, list):
            raise ValueError(f"inputs must be a string or a list of strings, got {type(inputs).__name__}")
        return self.model.predict(inputs, **parameters)


__all__ = ["EndpointHandler"]
