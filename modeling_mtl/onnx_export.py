"""ONNX export for serving: one graph with both heads and the embedding, optionally with int8 dynamic quantisation.

    from modeling_mtl import MultiTaskModel
    from modeling_mtl.onnx_export import OnnxMultiTaskModel, export_onnx

    export_onnx(MultiTaskModel.from_pretrained("outputs/atis"), "outputs/atis-onnx")   # model.onnx, model_int8.onnx
    onnx_model = OnnxMultiTaskModel.from_folder("outputs/atis-onnx", quantized=True)
    onnx_model.predict(["show me flights from boston to denver"])

or `python -m modeling_mtl export-onnx --model outputs/atis --output outputs/atis-onnx`, then
`python -m modeling_mtl {predict,embed,evaluate} --model outputs/atis-onnx --onnx int8 ...`. Needs the `onnx` extra
(`pip install "modeling-mtl[onnx]"`: onnx, onnxscript for torch's exporter, onnxruntime).

The graph takes `input_ids`, `attention_mask` (and `token_type_ids` when the encoder has segment embeddings), with
batch and sequence dimensions free, and returns `sentence_logits`, `token_logits` and `sentence_embedding`, as
`MultiTaskModel.forward` does. `model_int8.onnx` is onnxruntime's dynamic quantisation of it: int8 weights of the
MatMul layers (per output channel, 7-bit range), activations quantised per batch at run time.
`OnnxMultiTaskModel.predict` / `encode` tokenise and decode with the very code of `MultiTaskModel` (both inherit
`inference_mtl.MultiTaskInference`), so only the network differs. benchmarks/onnx_speed.py measures its speed and its
accuracy on ATIS against the PyTorch model.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .configuration_mtl import MultiTaskConfig
from .inference_mtl import MultiTaskInference
from .modeling_mtl import MultiTaskModel, MultiTaskModelOutput, forward_parameters
from .publishing_mtl import move_into_place
from .schema_mtl import TASKS


ONNX_NAME = "model.onnx"
QUANTIZED_NAME = "model_int8.onnx"
OUTPUT_NAMES = (*(task.logits_field for task in TASKS), "sentence_embedding")
EXPORT_TOLERANCE = 1e-3  # the float32 graph must reproduce the PyTorch logits to this (max abs difference)


def _require(module):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(
            f"ONNX export and inference need `{module.split('.')[0]}`: pip install \"modeling-mtl[onnx]\" "
            "(onnx, onnxscript, onnxruntime)"
        ) from error


class _ExportWrapper(nn.Module):
    """The three inference outputs of a `MultiTaskModel` as a tuple (what the exporter traces)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(getattr(outputs, name) for name in OUTPUT_NAMES)


def export_onnx(model, output_dir, quantize=True, opset_version=18, sample_texts=None):
    """Write `model.onnx` (float32), and with `quantize` also `model_int8.onnx`, with the model's config and
    tokenizer, into `output_dir` (written in a temporary folder first, then moved into place).

    The float32 graph is checked against the PyTorch model on `sample_texts` (a few sentences by default) and on a
    smaller batch of shorter sequences: a max abs difference above 1e-3 raises. The model is exported from the CPU
    and put back on its device afterwards. Returns the output folder as a `Path`.
    """
    _require("onnx")
    _require("onnxscript")
    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"export_onnx takes a MultiTaskModel, not {type(model).__name__}")
    tokenizer = model.require_tokenizer()
    texts = sample_texts or ["show me flights from boston to denver", "what is the cheapest fare", "hello"]
    device = model.device
    model = model.eval().cpu()
    encoding = model.tokenize_words([MultiTaskModel.prepare_text(text)[1] for text in texts])
    inputs = {key: value.cpu() for key, value in model.encoder_inputs(encoding).items()}
    # Only inputs the graph reads: segment ids exist for BERT-style encoders, not DistilBERT or decoder-only ones.
    if "token_type_ids" not in forward_parameters(type(model.encoder)) or model.causal_encoder:
        inputs.pop("token_type_ids", None)
    input_names = list(inputs)
    target = Path(output_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent if target.parent.exists() else None))
    try:
        dimensions = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
        with torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                _ExportWrapper(model).eval(),
                (),
                kwargs=inputs,
                input_names=input_names,
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={name: dimensions for name in input_names},
                opset_version=opset_version,
                dynamo=True,
                external_data=False,
            )
        program.save(str(staging / ONNX_NAME))
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # Also another batch size and sequence length: the graph must not have fixed the traced shapes.
        _check_export(model, staging / ONNX_NAME, [inputs, {key: value[:2, :-1] for key, value in inputs.items()}])
        if quantize:
            quantization = _require("onnxruntime.quantization")
            # Per-channel weight scales and 7-bit weights (reduce_range): on ATIS the plain per-tensor 8-bit setting
            # lost 0.3 slot-F1 and 0.9 exact-match points, this one nothing measurable (benchmarks/onnx_speed.py).
            # 7 bits also keep AVX2 CPUs (no VNNI) clear of the int16 saturation of their u8 x s8 multiply-add.
            quantization.quantize_dynamic(
                str(staging / ONNX_NAME),
                str(staging / QUANTIZED_NAME),
                weight_type=quantization.QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
            )
        (staging / "onnx_export.json").write_text(
            json.dumps(
                {
                    "inputs": input_names,
                    "outputs": list(OUTPUT_NAMES),
                    "opset_version": opset_version,
                    "files": sorted(path.name for path in staging.glob("*.onnx")),
                    "quantization": "onnxruntime quantize_dynamic: QInt8 per-channel weights, reduce_range" if quantize else None,
                },
                indent=2,
            )
            + "\n"
        )
        move_into_place(str(staging), str(target))
        if not quantize and (target / QUANTIZED_NAME).exists():
            (target / QUANTIZED_NAME).unlink()  # an earlier export's; it no longer matches model.onnx
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        model.to(device)
    return target


def _check_export(model, path, batches):
    """Raise unless the graph at `path` reproduces the model's outputs on each batch of `batches`."""
    session = _session(path)
    for inputs in batches:
        onnx_outputs = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        with torch.no_grad():
            reference = model(**inputs)
        for name, value in zip(OUTPUT_NAMES, onnx_outputs):
            difference = float(np.abs(getattr(reference, name).float().numpy() - value).max())
            if difference > EXPORT_TOLERANCE:
                raise RuntimeError(
                    f"the exported graph's {name} differ from the PyTorch model's by {difference:.2e} (allowed "
                    f"{EXPORT_TOLERANCE:g}): {path} is not a faithful export"
                )


def _session(path, threads=None):
    onnxruntime = _require("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _GraphModule(nn.Module):
    """An `OnnxMultiTaskModel` behind `nn.Module`'s interface (evaluation only: nothing to train or move)."""

    def __init__(self, onnx_model):
        super().__init__()
        self.onnx_model = onnx_model
        self.config = onnx_model.config
        # MultiTaskTrainer's transfer plan looks these modules up; the graph holds their weights, so they are empty.
        self.encoder = nn.Module()
        for task in TASKS:
            setattr(self, task.head_module, nn.Module())

    def forward(self, **inputs):
        return self.onnx_model(**inputs)


class OnnxMultiTaskModel(MultiTaskInference):
    """`predict`, `encode` and `score_batch` of a `MultiTaskModel`, with the network run by onnxruntime.

    Tokenisation, batching and decoding are the PyTorch model's own (both inherit `MultiTaskInference`), so the
    results have the same form, and differ from the PyTorch model's only as far as the graph's numbers do.
    """

    device = torch.device("cpu")
    training = False

    def __init__(self, session, config, tokenizer, path=None):
        self.session = session
        self.config = config
        self.tokenizer = tokenizer
        self.path = path
        self.input_names = [item.name for item in session.get_inputs()]

    @classmethod
    def from_folder(cls, folder, quantized=False, threads=None):
        """Load `model_int8.onnx` (`quantized=True`) or `model.onnx` from a folder written by `export_onnx`."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        path = folder / (QUANTIZED_NAME if quantized else ONNX_NAME)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: write it with export_onnx(model, {str(folder)!r}"
                + (", quantize=True)" if quantized else ")")
            )
        config = MultiTaskConfig.from_pretrained(folder)
        return cls(_session(path, threads), config, AutoTokenizer.from_pretrained(folder), path=str(path))

    def eval(self):
        return self

    def train(self, mode=True):
        if mode:
            raise ValueError("an ONNX model is for inference only")
        return self

    def __call__(self, **inputs):
        """The graph's outputs for a tokenised batch (tensors; labels and other keys are ignored, no loss)."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"the ONNX graph {self.path} needs the inputs {missing}")
        feeds = {name: inputs[name].cpu().numpy() for name in self.input_names}
        values = (torch.from_numpy(value) for value in self.session.run(None, feeds))
        return MultiTaskModelOutput(**dict(zip(OUTPUT_NAMES, values)))

    def as_module(self):
        """This model as an `nn.Module` without parameters, so that `Trainer.predict` can run it (`cli evaluate`)."""
        return _GraphModule(self)

    def logits_batch(self, inputs):
        outputs = self(**inputs)
        return {
            "sentence_logits": outputs.sentence_logits,
            "token_logits": outputs.token_logits,
            "sentence_embedding": outputs.sentence_embedding,
        }

    def embed_batch(self, inputs, normalize):
        # The graph's embedding follows config.normalize_embeddings; the raw pooled vector is not an output.
        embedding = self.score_batch(inputs)["sentence_embedding"]
        if normalize and not self.config.normalize_embeddings:
            return F.normalize(embedding, p=2, dim=1)
        if not normalize and self.config.normalize_embeddings:
            raise ValueError("this export returns normalised embeddings only (config.normalize_embeddings)")
        return embedding
