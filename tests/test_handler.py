"""Tests for `modeling_mtl/handler.py`, the Inference Endpoints handler every saved folder carries as `handler.py`:
run in a clean client (the package unimportable, only the folder), its answers are `predict`'s. (That it imports
only torch, transformers and the standard library is checked with every code file of a folder, in
tests/test_reliability_security.py.)"""

import json
import os
import subprocess
import sys
import textwrap

from conftest import BLOCK_PACKAGE

TEXTS = ["fly from boston to new york", "buy a new laptop"]

CLIENT = BLOCK_PACKAGE + textwrap.dedent(
    """
    import json, os

    folder, out, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sys.path.insert(0, folder)  # as Inference Endpoints imports the repository's handler.py
    from handler import EndpointHandler

    handler = EndpointHandler(folder)
    answers = {
        "one": handler({"inputs": texts[0]}),
        "list": handler({"inputs": texts, "parameters": {"top_k": 2, "aggregation_strategy": "average"}}),
    }
    errors = []
    for bad in ({"text": "x"}, {"inputs": 3}, {"inputs": "x", "parameters": {"temperature": 2}},
                {"inputs": "x", "parameters": {"top_k": 0}}):
        try:
            handler(bad)
        except ValueError as error:
            errors.append(str(error))
    answers["errors"] = errors
    handler.model.save_pretrained(out + "/resaved")  # a folder saved from the clean client keeps its handler
    answers["resaved"] = sorted(os.listdir(out + "/resaved"))
    print(json.dumps(answers))
    """
)


def test_the_handler_answers_like_predict_in_a_clean_client(lively_model, tmp_path):
    lively_model.config.sentence_temperature = 1.4
    lively_model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "handler.py").is_file()
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "model"), str(tmp_path), json.dumps(TEXTS)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["one"] == json.loads(json.dumps(lively_model.predict(TEXTS[:1])[0]))
    expected = lively_model.predict(TEXTS, top_k=2, aggregation_strategy="average")
    assert answers["list"] == json.loads(json.dumps(expected))
    assert [error.split(";")[0].split(",")[0] for error in answers["errors"]] == [
        'expected a JSON object {"inputs": <text or list of texts>',
        "inputs must be a string or a list of strings",
        "unknown parameter(s) ['temperature']",
        "top_k is 0",
    ]
    assert "handler.py" in answers["resaved"]
